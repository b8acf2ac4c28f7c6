"""WildDash 2: the public archive's layout and panoptic ground truth read as the official label policy
says (checked against a table built here, independently, from the policy), the seeded evaluation
selection, an optional dataset that is absent, and the benchmark submission (names, sizes, values; bad
inputs leave nothing half-written)."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from real_corpus import make_dataset

from uniseg.datasets.real import inspect_dataset
from uniseg.datasets.splits import SELECTIONS, select
from uniseg.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
# The evaluated class of every WD2 label id the corpus paints, from wd2_unified_label_policy.json
# (wilddash_scripts, commit cfcf369; its wd2eval column), written out here rather than read from uniseg's
# table: road-marking is the union's lane marking - general; zebra crossings are road, curbs sidewalk.
POLICY = {
    0: None,
    7: "road",
    8: "sidewalk",
    11: "building",
    21: "vegetation",
    23: "sky",
    24: "person",
    26: "car",
    34: "pickup",
    38: "lane marking - general",
    52: "sidewalk",
    76: "road",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("wd2") / "wilddash2"
    make_dataset("wilddash2", root)
    return root


def _expected(root: Path) -> dict:
    """Pixel counts decoded here: segment id = R + 256 G + 65536 B, its category from panoptic.json."""
    segments = {
        a["file_name"]: a["segments_info"]
        for a in json.loads((root / "panoptic.json").read_text())["annotations"]
    }
    counts: dict = {}
    for mask in sorted((root / "panoptic").glob("*.png")):
        rgb = np.asarray(Image.open(mask).convert("RGB"), dtype=np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        category = {s["id"]: s["category_id"] for s in segments[mask.name]}
        for segment, n in zip(*np.unique(ids, return_counts=True), strict=True):
            name = POLICY[category.get(int(segment), 0)] or "ignore"
            counts[name] = counts.get(name, 0) + int(n)
    return counts


def test_inspect_counts_the_pixels_the_official_policy_gives(corpus):
    report = inspect_dataset("wilddash2", corpus)
    assert report["images"] == 6
    found = {c: n for c, n in report["pixels"].items() if n}
    assert found == _expected(corpus)
    assert found["pickup"] > 0 and found["lane marking - general"] > 0, "the corpus paints them"
    assert len(report["pixels"]) == 27, "26 evaluated classes and ignore"


def test_the_cli_reports_the_same(corpus):
    cmd = [sys.executable, "-m", "uniseg.cli", "inspect", "wilddash2", "--root", str(corpus), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["pixels"] == inspect_dataset("wilddash2", corpus)["pixels"]


def test_a_segment_the_panoptic_file_does_not_list_is_named(tmp_path, corpus):
    import shutil

    root = tmp_path / "wilddash2"
    shutil.copytree(corpus, root)
    data = json.loads((root / "panoptic.json").read_text())
    data["annotations"][0]["segments_info"] = data["annotations"][0]["segments_info"][1:]
    (root / "panoptic.json").write_text(json.dumps(data))
    from uniseg.datasets import panoptic

    panoptic._segments.cache_clear()
    with pytest.raises(DataError, match=r"wd2_0000_100000\.png: segment \d+ is not in .*panoptic\.json"):
        inspect_dataset("wilddash2", root)


def test_the_evaluation_selection_is_seeded_and_pinned():
    keys = [f"img{k:05d}" for k in range(3000)]
    count, _ = SELECTIONS[("wilddash2", "val")]
    chosen = select("wilddash2", "val", keys)
    assert len(chosen) == count and chosen == sorted(chosen)
    assert select("wilddash2", "val", list(reversed(keys))) == chosen, "independent of the listing order"
    assert select("wilddash2", "val", keys[:10]) == keys[:10], "fewer images than the count: all"
    assert select("kitti", "val", keys[:5]) == keys[:5], "no selection elsewhere"


def test_an_absent_optional_dataset_is_recorded_and_passed_on(tmp_path):
    from uniseg.datasets.download import prepare
    from uniseg.datasets.layout import read_meta
    from uniseg.shards.packing import write_shards

    result = prepare("wilddash2", tmp_path / "downloads", tmp_path / "raw")
    assert result["images"] == 0 and read_meta(tmp_path / "raw").source == "absent"
    write_shards(tmp_path / "raw", tmp_path / "shards", 64, progress=False)
    assert read_meta(tmp_path / "shards").source == "absent"
    from uniseg.evaluate.evaluation import check_present

    with pytest.raises(DataError, match=r"wilddash2 was not found .*dvc repro -f download@wilddash2"):
        check_present({"wilddash2": read_meta(tmp_path / "shards")})
    with pytest.raises(DataError, match="cityscapes is not under"):  # not optional: an error
        prepare("cityscapes", tmp_path / "downloads", tmp_path / "raw-cs")


def _model(tmp_path: Path) -> Path:
    import torch

    from uniseg.model.segmodel import ModelInfo, build_model, save_model_file

    torch.manual_seed(0)
    union = ["car", "lane marking - general", "road", "sidewalk", "sky"]
    model = build_model("hrnet_w18_small", "cosine", len(union))
    info = ModelInfo(union, "hrnet_w18_small", "cosine", 20.0, "nullbce", offset=-1.4)
    save_model_file(tmp_path / "m.pt", model, info)
    return tmp_path / "m.pt"


def _predict(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "uniseg.cli", "predict", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)


@pytest.mark.slow
def test_a_submission_has_one_png_per_image_in_the_benchmarks_ids(tmp_path, corpus):
    from uniseg.predict.submission import submission_ids

    model, out = _model(tmp_path), tmp_path / "wd2.zip"
    proc = _predict(tmp_path, str(corpus / "images"), "--model", str(model), "--label-space", "wilddash2",
                    "--submission", str(out), "--abstain-threshold", "0.3")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    ids = set(submission_ids("wilddash2")[:26].tolist())
    assert ids == {
        1,
        7,
        8,
        11,
        12,
        13,
        14,
        17,
        19,
        20,
        21,
        22,
        23,
        24,
        25,
        26,
        27,
        28,
        31,
        32,
        33,
        34,
        35,
        36,
        37,
        38,
    }
    with zipfile.ZipFile(out) as zf:
        names = sorted(zf.namelist())
        assert names == sorted(f"{p.stem}.png" for p in (corpus / "images").glob("*.jpg")), (
            "flat, one per image"
        )
        for name in names:
            with zf.open(name) as f:
                png = Image.open(f)
                png.load()
            image = Image.open(corpus / "images" / name.replace(".png", ".jpg"))
            assert png.mode == "L" and png.size == image.size
            assert set(np.unique(np.asarray(png)).tolist()) <= ids | {0}


@pytest.mark.slow
def test_bad_inputs_get_one_line_and_no_zip(tmp_path, corpus):
    import shutil

    model, out = _model(tmp_path), tmp_path / "wd2.zip"
    images = tmp_path / "images"
    shutil.copytree(corpus / "images", images)
    (images / "broken.jpg").write_bytes(b"not an image")
    args = ["--label-space", "wilddash2", "--submission", str(out), "--abstain-threshold", "0.3"]
    proc = _predict(tmp_path, str(images), "--model", str(model), *args)
    assert (
        proc.returncode == 1
        and "broken.jpg: cannot be decoded" in proc.stderr
        and "Traceback" not in proc.stderr
    )
    assert not out.exists() and not list(tmp_path.glob(".wd2.zip*")), "nothing half-written"
    backbone = ROOT / "models" / "pretrained.pt"  # a backbone file: no union, no classifier
    proc = _predict(tmp_path, str(corpus / "images"), "--model", str(backbone), *args)
    assert proc.returncode == 1 and "not a uniseg model file" in proc.stderr and not out.exists()
    proc = _predict(tmp_path, str(corpus / "images"), "--model", str(model), "--label-space", "kitti",
                    "--submission", str(out))  # fmt: skip
    assert proc.returncode == 1 and "no submission format for 'kitti'" in proc.stderr
    proc = _predict(tmp_path, str(corpus / "images"), "--model", str(model), *args[:4])
    assert proc.returncode == 1 and "no abstention threshold" in proc.stderr, "θ: given or recorded"
