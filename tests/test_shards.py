"""Shards: resize, validation of bad data, determinism, atomicity; the training and evaluation sets."""

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from uniseg import IGNORE
from uniseg.data import EpochSampler, EvalSet, TrainSet
from uniseg.datasets.layout import DatasetMeta, write_meta
from uniseg.errors import DataError
from uniseg.packing import write_shards
from uniseg.shards import ShardReader

CLASSES = ["road", "car", "sky"]


def _dataset(root, n=5, size=(40, 30), name="toy", split="train"):
    rng = np.random.default_rng(0)
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(
            folder / f"s{k:03d}.png"
        )
        label = rng.integers(0, len(CLASSES), (size[1], size[0]), dtype=np.uint8)
        label[0, :3] = IGNORE
        Image.fromarray(label).save(folder / f"s{k:03d}.label.png")
    write_meta(root, DatasetMeta(name, "real", CLASSES, {split: n}))
    return root


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_shards_resize_and_read_back_by_index(tmp_path):
    raw = _dataset(tmp_path / "raw")
    result = write_shards(raw, tmp_path / "out", short_side=15, images_per_shard=2, workers=1, progress=False)
    assert result["images"] == 5 and result["shards"] == 3
    reader = ShardReader(tmp_path / "out")
    assert len(reader) == 5 and reader.indices("train") == [0, 1, 2, 3, 4]
    sample = reader.read(3)
    assert sample.key == "s003" and sample.image.shape == (15, 20, 3) and sample.label.shape == (15, 20)
    original = np.asarray(Image.open(raw / "train" / "s003.label.png"))
    assert set(np.unique(sample.label)) <= set(np.unique(original)), "labels resized with nearest"
    row = reader.manifest.iloc[3]
    assert sum(row["pixels"]) == 15 * 20 and row["pixels"][-1] == (sample.label == IGNORE).sum()


def test_shards_are_byte_identical_across_runs_and_worker_counts(tmp_path):
    raw = _dataset(tmp_path / "raw", n=6)
    write_shards(raw, tmp_path / "a", 15, 4, workers=1, progress=False)
    write_shards(raw, tmp_path / "b", 15, 4, workers=2, progress=False)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")


def _corrupt(raw, what):
    target = raw / "train" / "s002.png"
    label = raw / "train" / "s002.label.png"
    if what == "truncated":
        target.write_bytes(target.read_bytes()[:60])
        return "s002.png: cannot be decoded"
    if what == "empty":
        target.write_bytes(b"")
        return "s002.png: cannot be decoded"
    if what == "label size":
        Image.new("L", (7, 7)).save(label)
        return "label size"
    if what == "label mode":
        Image.new("RGB", (40, 30)).save(label)
        return "single-channel PNG"
    if what == "label value":
        arr = np.zeros((30, 40), dtype=np.uint8)
        arr[5, 5] = 9
        Image.fromarray(arr).save(label)
        return "label value 9"
    if what == "no label":
        label.unlink()
        return "has no label file"
    raise AssertionError(what)


@pytest.mark.parametrize(
    "what", ["truncated", "empty", "label size", "label mode", "label value", "no label"]
)
def test_bad_samples_fail_with_the_file_named_and_leave_no_output(tmp_path, what):
    raw = _dataset(tmp_path / "raw")
    message = _corrupt(raw, what)
    with pytest.raises(DataError, match=message) as err:
        write_shards(raw, tmp_path / "out", 15, 4, workers=1, progress=False)
    assert "s002" in str(err.value)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")], "no temporary left behind"


def test_skip_corrupt_lists_every_skipped_file(tmp_path):
    raw = _dataset(tmp_path / "raw")
    _corrupt(raw, "truncated")
    result = write_shards(raw, tmp_path / "out", 15, 4, workers=1, skip_corrupt=True, progress=False)
    assert result["images"] == 4 and len(result["skipped"]) == 1 and "s002.png" in result["skipped"][0]
    assert "s002" in (tmp_path / "out" / "skipped.json").read_text()


def test_a_failed_rerun_keeps_the_previous_shards(tmp_path):
    raw = _dataset(tmp_path / "raw")
    write_shards(raw, tmp_path / "out", 15, 4, workers=1, progress=False)
    before = _digest(tmp_path / "out")
    _corrupt(raw, "label value")
    with pytest.raises(DataError):
        write_shards(raw, tmp_path / "out", 15, 4, workers=1, progress=False)
    assert _digest(tmp_path / "out") == before


def test_empty_dataset_is_a_clear_error(tmp_path):
    (tmp_path / "raw").mkdir()
    write_meta(tmp_path / "raw", DatasetMeta("toy", "real", CLASSES, {}))
    with pytest.raises(DataError, match="no samples in any split"):
        write_shards(tmp_path / "raw", tmp_path / "out", 15, progress=False)


def test_training_set_maps_to_the_union_and_pads_crops_with_ignore(tmp_path):
    write_shards(_dataset(tmp_path / "raw"), tmp_path / "shards", 30, progress=False)
    union = ["car", "person", "road", "sky"]
    data = TrainSet([tmp_path / "shards"], union, crop=(64, 64), scale=(0.5, 0.5))
    image, label, dataset_id = data[(1, 123)]
    assert image.shape == (3, 64, 64) and label.shape == (64, 64) and dataset_id == 0
    values = set(label.unique().tolist())
    assert values <= {0, 2, 3, IGNORE} and IGNORE in values, "classes mapped by name; padding is ignore"
    again = data[(1, 123)]
    assert torch.equal(again[0], image) and torch.equal(again[1], label), "same seed, same augmentation"


def test_epoch_sampler_is_deterministic_and_splits_ranks():
    ids = [0] * 6 + [1] * 4
    a = EpochSampler(ids, seed=1)
    a.set_epoch(2)
    b = EpochSampler(ids, seed=1)
    b.set_epoch(2)
    assert list(a) == list(b)
    r0, r1 = EpochSampler(ids, 1, rank=0, world=2), EpochSampler(ids, 1, rank=1, world=2)
    r0.set_epoch(0)
    r1.set_epoch(0)
    assert not {i for i, _ in r0} & {i for i, _ in r1}


def test_eval_set_keeps_labels_at_the_stored_resolution(tmp_path):
    raw = _dataset(tmp_path / "raw", split="val")
    write_shards(raw, tmp_path / "shards", 30, progress=False)
    data = EvalSet(tmp_path / "shards", "val", height=64)
    image, label, world, key = data[0]
    assert image.shape[-2] == 64 and label.shape == (30, 40) and world.numel() == 0 and key == "s000"
    with pytest.raises(DataError, match="no 'train' samples"):
        EvalSet(tmp_path / "shards", "train")
