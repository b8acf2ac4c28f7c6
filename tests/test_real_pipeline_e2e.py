"""End to end on real-layout data: `data.source: real` through `dvc repro`, in a temporary git copy.

The corpus (tests/real_corpus.py) holds all seven datasets in their official layouts and encodings; the
test sets are exactly the evaluation lists that ship with uniseg, the training sets bring their own
`splits/val.txt`. Checked: the whole DAG runs and scores the unseen sets; data/raw holds indexes, not
copies; a test set's labels stay at their original size; the cache links the shards (disk use);
a second `dvc repro` does nothing; after a source label changes, a rescan re-shards that dataset and
no other; a truncated label fails the shard stage with one line naming it and nothing half-written.
"""

import json
import re
import subprocess
from pathlib import Path

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
    """Bytes allocated under `paths`, each inode counted once (as one `du` over all of them)."""
    seen, total = set(), 0
    for base in paths:
        for p in [base, *base.rglob("*")] if base.exists() else []:
            st = p.lstat()
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def _links_without_reflinks(work: Path) -> bool:
    """DVC's cache can only link (no reflinks) here: disk use is then measurable by inodes."""
    doctor = _run(["dvc", "doctor"], work)
    types = re.search(r"Cache types: (.*)", doctor).group(1)
    return "reflink" not in types and ("hardlink" in types or "symlink" in types)


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
    assert {"train", "mine", "relabel", "retrain", "evaluate", "report"} <= _ran(first)
    metrics = json.loads((work / "reports/metrics.json").read_text())
    assert {"kitti", "wilddash", "camvid"} <= set(metrics["base"]["unseen"]), metrics["base"]["unseen"]
    for name, splits in expected.items():
        raw = work / "data/raw" / name
        assert sorted(p.name for p in raw.iterdir()) == ["dataset.json", "index.parquet"], "an index, no copy"
        assert json.loads((raw / "dataset.json").read_text())["splits"] == splits
    kitti = ShardReader(work / "data/shards/kitti").read(0)
    assert kitti.image.shape == (40, 133, 3) and kitti.label.shape == (48, 160), "test labels at full size"

    shards = _disk([work / "data/shards"])
    total = _disk([work / "data", work / ".dvc/cache"])
    models = sum((work / "models" / m).stat().st_size for m in ("base.pt", "crbce.pt"))
    source = _disk([corpus])
    print(f"disk: shards {shards}, data/ + .dvc/cache {total} (models {models} of it), sources {source}")
    if _links_without_reflinks(work):  # DVC links the outputs: the shards are on disk once
        assert total - models <= 1.3 * shards, (total, models, shards)

    assert not _ran(_run(["dvc", "repro"], work)), "nothing changed, nothing runs"

    label = corpus / "kitti/training/semantic/000052_10.png"  # in the shipped KITTI val list
    values = np.asarray(Image.open(label)).copy()
    values[:4] = 7
    Image.fromarray(values).save(label)
    assert not _ran(_run(["dvc", "repro"], work)), "DVC does not watch the sources (a rescan does)"
    rescan = _ran(_run(["dvc", "repro", "-f", "download"], work))
    assert rescan == {f"download@{n}" for n in expected}, rescan
    assert _ran(_run(["dvc", "repro", "shard"], work)) == {"shard@kitti"}, "only the changed dataset"
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
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"{broken}: cannot be decoded" in errors[0], proc.stdout + proc.stderr
    leftovers = [p for p in (work / "data").rglob(".*") if p.name.endswith(".tmp") or ".old-" in p.name]
    assert not leftovers and not (work / "data/shards/mapillary").exists(), "nothing half-written"
