"""The dataset description every source has (dataset.json, in data/raw/<name>/ and in the shards) and
the canonical layout the synthetic datasets are rendered into; the shard stage reads it. (A real
dataset is not copied into it: its data/raw/<name>/ holds dataset.json and an index of the user's files,
uniseg/datasets/index.py.)

    data/raw/<name>/
      dataset.json                  {"name", "source", "classes", "fallbacks", "splits", "world_classes"?,
                                     "negatives"?}
      <split>/<key>.jpg | .png      RGB image
      <split>/<key>.label.png       uint8 "L": label-space indices (dataset.json classes), 255 = ignore
      <split>/<key>.world.png       synthetic only: uint8 world-class ids (dataset.json world_classes)

Splits are `train`, `val`, `test`. Keys are unique within a dataset and safe as file names. `negatives`
lists the keys of a test set's negative frames (no road-scene class; void ground truth): WildDash 2's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from uniseg.errors import DataError
from uniseg.fsio import write_json

SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".jpg", ".png")


@dataclass(frozen=True)
class DatasetMeta:
    name: str
    source: str  # "synthetic" | "real"
    classes: list[str]  # label space, in label-space index order
    splits: dict[str, int] = field(default_factory=dict)  # split -> image count
    fallbacks: dict[str, str] = field(default_factory=dict)  # class -> union class used when absent
    world_classes: list[str] | None = None  # synthetic only
    negatives: list[str] = field(default_factory=list)  # keys of negative frames (a test set's)

    def to_json(self) -> dict:
        out = {
            "name": self.name,
            "source": self.source,
            "classes": list(self.classes),
            "splits": dict(self.splits),
            "fallbacks": dict(self.fallbacks),
        }
        if self.world_classes is not None:
            out["world_classes"] = list(self.world_classes)
        if self.negatives:
            out["negatives"] = list(self.negatives)
        return out


def write_meta(root: str | Path, meta: DatasetMeta) -> None:
    write_json(Path(root) / "dataset.json", meta.to_json())


def read_meta(root: str | Path) -> DatasetMeta:
    path = Path(root) / "dataset.json"
    if not path.is_file():
        raise DataError(f"{path}: not found; run the download stage for this dataset first (dvc repro)")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        return DatasetMeta(
            name=d["name"],
            source=d["source"],
            classes=list(d["classes"]),
            splits=dict(d.get("splits", {})),
            fallbacks=dict(d.get("fallbacks", {})),
            world_classes=d.get("world_classes"),
            negatives=list(d.get("negatives", [])),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a valid dataset description ({exc})") from None


@dataclass(frozen=True)
class SampleFiles:
    key: str
    image: Path
    label: Path
    world: Path | None


def list_samples(root: str | Path, split: str) -> list[SampleFiles]:
    """The samples of one split in the canonical layout, sorted by key."""
    folder = Path(root) / split
    if not folder.is_dir():
        return []
    out = []
    for image in sorted(p for p in folder.iterdir() if p.suffix in IMAGE_SUFFIXES and "." not in p.stem):
        label = folder / f"{image.stem}.label.png"
        world = folder / f"{image.stem}.world.png"
        if not label.is_file():
            raise DataError(f"{image}: has no label file {label.name}")
        out.append(SampleFiles(image.stem, image, label, world if world.is_file() else None))
    return out


def read_spaces(root: str | Path, datasets) -> dict[str, list[str]]:
    """dataset -> its label space, from `<root>/<dataset>/dataset.json` (raw or shard folders): the one
    place label spaces are read at training time, so synthetic and user-defined datasets work alike."""
    return {d: list(read_meta(Path(root) / d).classes) for d in datasets}
