"""End to end on real-layout data: `data.source: real` through `dvc repro`, in a temporary git copy.

The corpus (tests/real_corpus.py) holds all seven datasets in their official layouts and encodings; the
test sets are exactly the evaluation lists that ship with uniseg, the training sets bring their own
`splits/val.txt`. Checked: the whole DAG runs and scores the unseen sets (WildDash 2 from its panoptic
ground truth); data/raw holds indexes, not
copies; a test set's labels stay at their original size; the cache links the shards (disk use);
a second `dvc repro` does nothing; after a source label changes, a rescan (`dvc repro -f
download@<ds>`) re-shards that dataset and not an unchanged one; a truncated label fails the shard stage with one line naming it and nothing half-written.
"""

import json
import re
import subprocess

import numpy as np
import pytest
import real_corpus
import yaml
from PIL import Image
from test_pipeline_e2e import _copy_tree, _env, _run

from uniseg.shards import ShardReader

TINY = {  # over params.tiny.yaml: a shorter side below the corpus' sizes, no pretrained checkpoint
    "shard": {"short_side": 40},
    "model": {"pretrained": "none"},
    "train": {"crop": [40, 80]},
    "evaluate": {"height": 40},
}


def _ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def _disk(paths) -> int:
    """Bytes of the files under `paths`, each file (inode) counted once: hard links to the cache are one
    copy, as `du` counts them (sizes, not blocks: directories and block rounding would swamp tiny data)."""
    seen, total = set(), 0
    for base in paths:
        for p in base.rglob("*") if base.exists() else []:
            st = p.lstat()
            if p.is_file() and not p.is_symlink() and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


@pytest.mark.slow
def test_real_data_pipeline_end_to_end(tmp_path):
    corpus = tmp_path / "downloads"
    expected = real_corpus.make_corpus(corpus)
    work = tmp_path / "repo"
    work.mkdir()
    _copy_tree(work)
    params = yaml.safe_load((work / "params.tiny.yaml").read_text())
    params["data"].update(source="real", root=str(corpus))
    for section, values in TINY.items():
        params[section].update(values)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(["git", "init", "-q"], work)
    _run(["git", "add", "-A"], work)
    _run(["git", "commit", "-qm", "real"], work)

    first = _run(["dvc", "repro"], work)
    print("\n".join(line for line in first.splitlines() if re.search(r" in \d+\.\ds$", line)))
    assert {"train", "mine", "relabel", "retrain", "evaluate", "report"} <= _ran(first)
    metrics = json.loads((work / "reports/metrics.json").read_text())
    assert {"kitti", "wilddash", "camvid", "wilddash2"} <= set(metrics["base"]["unseen"]), metrics["base"][
        "unseen"
    ]
    wd2 = json.loads((work / "reports/class_iou.json").read_text())["base"]["unseen"]["wilddash2"]["iou"]
    assert wd2["pickup"] == 0.0, (
        "a class the union lacks is scored as never predicted (IoU 0 where it occurs)"
    )
    for name, splits in expected.items():
        raw = work / "data/raw" / name
        assert sorted(p.name for p in raw.iterdir()) == ["dataset.json", "index.parquet"], "an index, no copy"
        assert json.loads((raw / "dataset.json").read_text())["splits"] == splits
    kitti = ShardReader(work / "data/shards/kitti").read(0)
    assert kitti.image.shape == (40, 133, 3) and kitti.label.shape == (48, 160), "test labels at full size"

    shards = _disk([work / "data/shards"])
    total = _disk([work / "data", work / ".dvc/cache"])
    models = sum((work / "models" / m).stat().st_size for m in ("base.pt", "crbce.pt"))
    du = [["du", "-sh", "data/shards"], ["du", "-shc", "data", ".dvc/cache"], ["du", "-sh", str(corpus)]]
    du = "".join(subprocess.run(a, cwd=work, capture_output=True, text=True).stdout for a in du)
    print(f"bytes: shards {shards}, data/ + .dvc/cache {total} (models {models}); du:\n{du}")
    assert total - models <= 1.3 * shards, "the cache links the outputs (.dvc/config cache.type)"

    assert not _ran(_run(["dvc", "repro"], work)), "nothing changed, nothing runs"

    label = corpus / "kitti/training/semantic/000052_10.png"  # in the shipped KITTI val list
    values = np.asarray(Image.open(label)).copy()
    values[:4] = 7
    Image.fromarray(values).save(label)
    assert not _ran(_run(["dvc", "repro"], work)), "DVC does not watch the sources (a rescan does)"
    rescan = _ran(_run(["dvc", "repro", "-f", "download@kitti", "download@bdd"], work))
    assert rescan == {"download@kitti", "download@bdd"}, rescan
    assert _ran(_run(["dvc", "repro", "shard"], work)) == {"shard@kitti"}, "only the changed index re-shards"
    training = _run(["dvc", "status", "train", "mine", "relabel", "retrain"], work)
    assert "up to date" in training and "changed" not in training, "a test set's shards retrain nothing"
    assert "data/shards" in _run(["dvc", "status", "evaluate"], work), "but they are re-scored"
    reader = ShardReader(work / "data/shards/kitti")
    row = reader.manifest.index[reader.manifest["key"] == "000052_10"][0]
    assert (reader.read(row).label[:4] == 0).all(), "the new label is in: road (labelId 7) is class 0"

    broken = corpus / "mapillary/training/v1.2/labels/-mtrain002.png"
    broken.write_bytes(broken.read_bytes()[:60])
    _run(["dvc", "repro", "-f", "download@mapillary"], work)
    proc = subprocess.run(
        ["dvc", "repro", "shard@mapillary"], cwd=work, env=_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode != 0
    errors = re.findall(r"(?<![A-Za-z])error: (.*)", proc.stdout + proc.stderr)  # the stage's, not DVC's
    assert len(errors) == 1 and errors[0].startswith(f"{broken}: cannot be decoded"), proc.stderr
    leftovers = [p for p in (work / "data").rglob(".*") if p.name.endswith(".tmp") or ".old-" in p.name]
    assert not leftovers and not (work / "data/shards/mapillary").exists(), "nothing half-written"
