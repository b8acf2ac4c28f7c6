"""Label spaces of the known datasets, the unified (union) label space, and test-space resolution.

All label data lives in files beside this module (`datasets.yaml`, `labels/*.tsv`); nothing here is an
index table pasted by hand. Classes are identified by *name* in one vocabulary; indices are derived:
a dataset's label-space index is the position of the name in its label space, a union index the
position in the sorted union.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from uniseg import IGNORE
from uniseg.errors import UserError, choices

HERE = Path(__file__).parent
UNKNOWN = -1  # raw value not in a dataset's table (an error when met in data)


@dataclass(frozen=True)
class LabelRow:
    value: int | tuple[int, int, int]  # raw label id, or an (R, G, B) colour
    raw_name: str
    name: str | None  # unified class name, None = ignore
    fallback: str | None = None  # used when the union lacks `name` (e.g. CamVid bicyclist -> rider)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    role: str  # "train" | "test"
    encoding: str  # "ids" | "rgb"
    rows: tuple[LabelRow, ...]
    classes: tuple[str, ...]  # the label space, in label-space index order
    resolution: tuple[int, int] | None = None  # (width, height) of the official images, if fixed
    fallbacks: dict[str, str] = field(default_factory=dict)
    # Score the classes a model's union lacks (as a benchmark server does: IoU 0 where they occur)
    # instead of leaving them out.
    score_missing: bool = False
    in_mean: bool = True  # averaged into the unseen mean (WildDash 2 is a benchmark of its own)


@functools.cache
def _registry() -> dict:
    with open(HERE / "datasets.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def known_datasets() -> list[str]:
    """Names of the real datasets uniseg knows (training ones first, then test ones)."""
    reg = _registry()
    return [n for n in reg if reg[n]["role"] == "train"] + [n for n in reg if reg[n]["role"] == "test"]


def _parse_value(text: str, encoding: str) -> int | tuple[int, int, int]:
    if encoding == "rgb":
        r, g, b = (int(v) for v in text.split(","))
        return (r, g, b)
    return int(text)


def _read_table(table: str, encoding: str) -> tuple[LabelRow, ...]:
    rows = []
    with open(HERE / "labels" / f"{table}.tsv", encoding="utf-8", newline="") as f:
        for rec in csv.DictReader(f, delimiter="\t"):
            rows.append(
                LabelRow(
                    value=_parse_value(rec["value"], encoding),
                    raw_name=rec["raw_name"],
                    name=rec["class"] or None,
                    fallback=(rec.get("fallback") or None),
                )
            )
    return tuple(rows)


@functools.cache
def dataset_info(name: str) -> DatasetInfo:
    """The label table and label space of a known real dataset; unknown names list the known ones."""
    reg = _registry()
    if name not in reg:
        raise UserError(f"unknown dataset '{name}'; known datasets: {choices(known_datasets())}")
    spec = reg[name]
    rows = _read_table(spec["table"], spec["encoding"])
    seen: list[str] = []
    for row in rows:
        if row.name is not None and row.name not in seen:
            seen.append(row.name)
    classes = tuple(spec.get("order") or seen)
    if sorted(classes) != sorted(seen):
        raise AssertionError(f"datasets.yaml: order of {name} does not list the classes of its table")
    res = spec.get("resolution")
    return DatasetInfo(
        name=name,
        title=spec["title"],
        role=spec["role"],
        encoding=spec["encoding"],
        rows=rows,
        classes=classes,
        resolution=tuple(res) if res else None,
        fallbacks={r.name: r.fallback for r in rows if r.name and r.fallback},
        score_missing=bool(spec.get("score_missing", False)),
        in_mean=bool(spec.get("in_mean", True)),
    )


def label_space(name: str) -> list[str]:
    """Class names of a known dataset's label space, in label-space index order."""
    return list(dataset_info(name).classes)


def union(spaces: Iterable[Sequence[str]]) -> list[str]:
    """The unified label space: the union of the given label spaces by name, sorted alphabetically."""
    names: set[str] = set()
    for space in spaces:
        names.update(space)
    return sorted(names)


@functools.cache
def paper_relations() -> tuple[tuple[str, str, bool], ...]:
    """(primary, secondary, drawn by the synthetic benchmark) of the paper's Table A-1, from
    paper_relations.tsv. Every primary is a Mapillary class."""
    with open(HERE / "paper_relations.tsv", encoding="utf-8") as f:
        rows = csv.DictReader((line for line in f if not line.startswith("#")), delimiter="\t")
        return tuple((r["primary"], r["secondary"], r["synthetic"] == "yes") for r in rows)


def raw_lut(name: str) -> np.ndarray:
    """For an `ids`-encoded dataset: int16 [256] raw value -> label-space index, IGNORE, or UNKNOWN.

    Negative raw ids (Cityscapes' license plate, -1) are stored as 255 in uint8 PNGs.
    """
    info = dataset_info(name)
    if info.encoding != "ids":
        raise ValueError(f"{name} labels are {info.encoding}-encoded, not ids")
    lut = np.full(256, UNKNOWN, dtype=np.int16)
    index = {c: i for i, c in enumerate(info.classes)}
    for row in info.rows:
        lut[int(row.value) % 256] = IGNORE if row.name is None else index[row.name]
    return lut


def colour_table(name: str) -> tuple[np.ndarray, np.ndarray]:
    """For an `rgb`-encoded dataset: colours uint8 [N, 3] and their label-space index (or IGNORE) [N]."""
    info = dataset_info(name)
    if info.encoding != "rgb":
        raise ValueError(f"{name} labels are {info.encoding}-encoded, not rgb")
    index = {c: i for i, c in enumerate(info.classes)}
    colours = np.array([row.value for row in info.rows], dtype=np.uint8)
    targets = np.array([IGNORE if row.name is None else index[row.name] for row in info.rows], dtype=np.int64)
    return colours, targets


@dataclass(frozen=True)
class Resolution:
    """How a test label space maps onto a model's union.

    union_index[k] is the union channel that scores label-space class k, or None when the union has no
    such class (the class is then excluded from scoring and listed in `missing`).
    """

    classes: tuple[str, ...]
    union_index: tuple[int | None, ...]
    missing: tuple[str, ...]
    fallbacks_used: dict[str, str]

    @property
    def evaluated(self) -> list[int]:
        """Label-space indices of the classes that can be scored."""
        return [k for k, u in enumerate(self.union_index) if u is not None]


def resolve(
    classes: Sequence[str], union_classes: Sequence[str], fallbacks: dict[str, str] | None = None
) -> Resolution:
    """Resolve a test label space against a model's union, by name, with explicit fallbacks.

    A class absent from the union (and without a fallback in it) is reported in `missing`; the other
    classes keep their own label-space indices, so nothing is silently shifted.
    """
    position = {c: i for i, c in enumerate(union_classes)}
    fallbacks = fallbacks or {}
    index: list[int | None] = []
    missing: list[str] = []
    used: dict[str, str] = {}
    for c in classes:
        if c in position:
            index.append(position[c])
        elif fallbacks.get(c) in position:
            index.append(position[fallbacks[c]])
            used[c] = fallbacks[c]
        else:
            index.append(None)
            missing.append(c)
    if not any(u is not None for u in index):
        raise UserError(
            f"none of the test classes ({choices(classes)}) exists in the model's union; "
            "evaluate it with a model trained on datasets that share classes with it"
        )
    return Resolution(tuple(classes), tuple(index), tuple(missing), used)


def space_to_union_lut(classes: Sequence[str], union_classes: Sequence[str]) -> np.ndarray:
    """uint8 [256]: label-space index -> union index (IGNORE for classes outside the union and for 255)."""
    if len(union_classes) >= IGNORE:
        raise UserError(f"a union of {len(union_classes)} classes does not fit uint8 labels (max 254)")
    position = {c: i for i, c in enumerate(union_classes)}
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for k, c in enumerate(classes):
        if c in position:
            lut[k] = position[c]
    return lut


def owners(union_classes: Sequence[str], spaces: dict[str, Sequence[str]]) -> list[dict]:
    """The unified label space as records: index, name and the datasets whose label space has it."""
    return [
        {"index": i, "name": c, "datasets": [d for d, space in spaces.items() if c in space]}
        for i, c in enumerate(union_classes)
    ]
