"""The evaluation's files and the metric vocabulary: reports/metrics.json and reports/class_iou.json (DVC
metrics), reports/eval/<model>/, reports/relations.json and the seeds headline (reports/headline.json,
.md) — written and read here only.

metrics.json, the headline: {model: {group: {dataset: {"miou", "miou_merged", "classes"}, "mean": ..,
"mean_merged": ..}}}, percent, one decimal. Groups: unseen, seen, cross, union; a cross entry is named
"<i>_in_<j>" (the val images of dataset i scored in dataset j's label space); unseen entries on the
synthetic benchmark also hold "headroom" (mIoU points had every pixel of the classes a true relation can
move been right; group mean "mean_headroom"); union entries (the union readout of a training dataset's
val images, readout.py) hold "top1" and "confident" (percent; group means "mean", "mean_confident") and
the full-union IoU, "iou_full" over its cells and "iou_full_reachable" over the cells a relation can reach
(group means "mean_iou_full", "mean_iou_full_reachable"); a test set with negative frames holds the void
share of its negative and of its positive frames ("negative_void", "positive_void").
class_iou.json, beside it, holds the per-class numbers under the same path: {model: {group: {dataset:
{"iou": {class: IoU}}}}}, for the readout {"top1_classes" / "confident_classes": {world class: %},
"iou_full_classes": {union class: IoU}, "reachable_cells": [union class]}.
Metric keys such as `base.unseen.kitti.miou` and `base.unseen.kitti.iou.rider` are a contract (README,
`dvc metrics diff`, `make seeds`).
relations.json: {"relations": {"tau", "tau_pairs", "relations", and on synthetic data "precision",
"recall", "mined", "true", "hits"}}.
The budget ladder (reports/seeds/<profile>/ladder.json, experiments/ladder.py): {"rule", "budgets", "arms",
"seeds", "min_gain", "curve": {arm: {budget: {seed: seen mean}}}, "decision", "profile" (what it was made
from, as a headline's), and once B* is fixed "unseen": {pair: {budget: {seed: difference}}}}.

Readers get a `Metrics` object: no caller filters "mean" keys out of dataset names or splits names.

The vocabulary is spelled here only (tests/test_scores.py greps the rest of the code for it): the key of
each protocol's mIoU (`PROTOCOL_KEYS`), each group's mean of it (`MEAN_KEYS`) and the names of cross
pairs (`cross_name`, `parse_cross`). Adding a protocol: implement it in protocols.py (`PROTOCOLS`), then
one line in `PROTOCOL_KEYS`; every table and figure iterates these.

Longer than the project's other modules on purpose: it is the one place that spells a metric key and the
one reader and writer of every results file; splitting it would split exactly that ownership.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from uniseg.errors import DataError
from uniseg.fsio import write_json, write_text

GROUPS = ("unseen", "seen", "cross", "union")
RESTRICTED = "restricted"  # the paper's protocol: the one per-class IoUs and example predictions use
# protocol -> the per-dataset mIoU key; every task is scored under EVERY_TASK, abstain only on a test set
# with negative frames (WildDash 2: its class mIoU as a submission with abstention would score)
PROTOCOL_KEYS = {RESTRICTED: "miou", "merged": "miou_merged", "abstain": "miou_abstain"}
EVERY_TASK = (RESTRICTED, "merged")
NEGATIVE_VOID = "negative_void"  # % of a test set's negative-frame pixels left void (abstain.py)
POSITIVE_VOID = "positive_void"  # ... and of its positive frames' pixels, under the same θ
HEADROOM = "headroom"  # unseen sets (synthetic): mIoU points a relation could add at most
TOP1, CONFIDENT = "top1", "confident"  # the union readout: outside-space top-1 right; its p > 0.5
FULL_IOU, FULL_IOU_REACHABLE = "iou_full", "iou_full_reachable"  # the readout's full-union IoU (cells)
REACHABLE_CELLS = "reachable_cells"  # the cells a relation can reach (a list, in class_iou.json)
# per-dataset key -> the group's mean key (the union group's main number, top1, has the plain "mean")
MEAN_KEYS = {
    "miou": "mean",
    "miou_merged": "mean_merged",
    "miou_abstain": "mean_abstain",
    HEADROOM: "mean_headroom",
    TOP1: "mean",
    CONFIDENT: "mean_confident",
    FULL_IOU: "mean_iou_full",
    FULL_IOU_REACHABLE: "mean_iou_full_reachable",
}
# per-class blocks (class_iou.json)
CLASS_KEYS = {
    "iou": "iou",
    TOP1: "top1_classes",
    CONFIDENT: "confident_classes",
    FULL_IOU: "iou_full_classes",
}
_CROSS = "_in_"


def cross_name(images: str, space: str) -> str:
    """The metric name of D_images' val images scored in D_space's label space."""
    return f"{images}{_CROSS}{space}"


def parse_cross(name: str) -> tuple[str, str] | None:
    """(images, space) of a cross name, None for a plain dataset name."""
    images, sep, space = name.partition(_CROSS)
    return (images, space) if sep else None


def mean_of(entries: list[dict], key: str, digits: int = 1) -> float | None:
    values = [e[key] for e in entries if e.get(key) is not None]
    return round(float(np.mean(values)), digits) if values else None


def _entry(r) -> dict:
    """A metrics entry of one task's result: protocols.TaskScore or readout.ReadoutScore."""
    if hasattr(r, "top1"):  # the union readout
        entry = {TOP1: mean_of([{"v": v} for v in r.top1.values()], "v"), CLASS_KEYS[TOP1]: r.top1}
        if r.confident is not None:
            entry[CONFIDENT] = mean_of([{"v": v} for v in r.confident.values()], "v")
            entry[CLASS_KEYS[CONFIDENT]] = r.confident
        if r.iou is not None:
            entry[FULL_IOU] = mean_of([{"v": v} for v in r.iou.values()], "v")
            entry[FULL_IOU_REACHABLE] = mean_of([{"v": r.iou[c]} for c in r.reachable], "v")
            entry[CLASS_KEYS[FULL_IOU]] = r.iou
            entry[REACHABLE_CELLS] = list(r.reachable)
        return entry
    entry = {PROTOCOL_KEYS[p]: r.miou.get(p) for p in PROTOCOL_KEYS if p in EVERY_TASK or p in r.miou}
    entry["classes"] = r.classes[RESTRICTED]
    if r.headroom is not None:
        entry[HEADROOM] = r.headroom
    if r.negative_void is not None:
        entry[NEGATIVE_VOID] = r.negative_void
        entry[POSITIVE_VOID] = r.positive_void
    entry["iou"] = {c: v for c, v in r.iou[RESTRICTED].items() if v is not None}
    return entry


def model_metrics(results: dict) -> dict:
    """One model's metrics.json entry from evaluation results {task: TaskScore | ReadoutScore} (task:
    group, name, in_mean). Each group gets the mean of every key its averaged entries have (a task with
    in_mean False, WildDash 2, is reported but not averaged)."""
    out: dict = {}
    averaged: dict[str, list] = {}
    for task, r in results.items():
        out.setdefault(task.group, {})[task.name] = entry = _entry(r)
        if getattr(task, "in_mean", True):
            averaged.setdefault(task.group, []).append(entry)
    for name, group in out.items():
        entries = averaged.get(name, [])
        for key, mean_key in MEAN_KEYS.items():
            if any(key in e for e in entries):
                group[mean_key] = mean_of(entries, key, 2 if key == HEADROOM else 1)
    return out


def write_details(
    results: dict, out_dir: Path, model: dict | None = None, examples: dict | None = None
) -> None:
    """reports/eval/<model>/: iou.json (rows of the DVC bar plot), details.json (per task: protocols,
    classes the union lacks, confusion matrices, or the union readout's numbers per world class; the
    model's loss, training datasets and union) and examples/<dataset>/: <key>.png (the restricted
    predictions the report shows, label-space indices) and, for a training dataset, <key>.outside.png
    (the union readout's outside-space top-1: union index and probability x 255, a two-channel PNG)."""
    rows, details = [], {}
    for task, r in results.items():
        key = f"{task.group}/{task.name}"
        if hasattr(r, "top1"):
            details[key] = {"images": task.images, TOP1: r.top1, CONFIDENT: r.confident, "pixels": r.pixels}
            details[key] |= {FULL_IOU: r.iou, REACHABLE_CELLS: list(r.reachable)}
            continue
        for cls, iou in r.iou[RESTRICTED].items():
            if iou is not None:
                rows.append({"task": key, "class": cls, "key": f"{key}: {cls}", "iou": iou})
        details[key] = {
            "images": task.images,
            "label_space": task.space,
            **{PROTOCOL_KEYS[p]: r.miou.get(p) for p in PROTOCOL_KEYS if p in EVERY_TASK or p in r.miou},
            "classes": r.classes[RESTRICTED],
            "missing": r.missing,
            "iou": r.iou,
            "confusion": {"classes": list(r.iou[RESTRICTED]), **r.confusion},
        }
        for name, value in (
            (HEADROOM, r.headroom),
            (NEGATIVE_VOID, r.negative_void),
            (POSITIVE_VOID, r.positive_void),
        ):
            if value is not None:
                details[key][name] = value
    write_json(out_dir / "iou.json", rows)
    write_json(out_dir / "details.json", {"model": model or {}, "tasks": details}, indent=1)
    for dataset, kept in (examples or {}).items():
        folder = out_dir / "examples" / dataset
        folder.mkdir(parents=True, exist_ok=True)
        for key, prediction in kept.labels:
            Image.fromarray(prediction).save(folder / f"{key}.png")
        for key, top1, score in kept.outside:
            Image.fromarray(np.stack([top1, score], -1), mode="LA").save(folder / f"{key}{_OUTSIDE}.png")


_OUTSIDE = ".outside"


def read_details(eval_dir: Path, model: str) -> dict:
    """{"model": {"loss", ...}, "tasks": {...}} of reports/eval/<model>/details.json."""
    return _load(Path(eval_dir) / model / "details.json", "evaluate")


def read_examples(eval_dir: Path, model: str) -> dict[str, dict[str, np.ndarray]]:
    """{dataset: {key: prediction uint8 [H, W]}} stored by the evaluation for the report."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for path in sorted((Path(eval_dir) / model / "examples").glob("*/*.png")):
        if not path.stem.endswith(_OUTSIDE):
            out.setdefault(path.parent.name, {})[path.stem] = np.array(Image.open(path))
    return out


def read_outside_examples(eval_dir: Path, model: str) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """{dataset: {key: (outside-space top-1 as union indices uint8 [H, W], its probability float [H, W])}}:
    the union readout's example predictions (training datasets' val images)."""
    out: dict[str, dict] = {}
    for path in sorted((Path(eval_dir) / model / "examples").glob(f"*/*{_OUTSIDE}.png")):
        pixels = np.array(Image.open(path))
        key = path.stem[: -len(_OUTSIDE)]
        out.setdefault(path.parent.name, {})[key] = (pixels[..., 0], pixels[..., 1] / 255.0)
    return out


CLASS_FILE = "class_iou.json"


def write_metrics(path: Path, metrics: dict[str, dict]) -> None:
    """metrics.json without the per-class IoUs (a headline that fits a terminal), class_iou.json beside
    it with them."""
    blocks = {*CLASS_KEYS.values(), REACHABLE_CELLS}
    head = {m: {g: {n: ({k: v for k, v in e.items() if k not in blocks} if isinstance(e, dict) else e)
                    for n, e in group.items()} for g, group in groups.items()} for m, groups in metrics.items()}  # fmt: skip
    per_class = {m: {g: {n: {k: v for k, v in e.items() if k in blocks} for n, e in group.items()
                         if isinstance(e, dict) and blocks & set(e)}
                     for g, group in groups.items()} for m, groups in metrics.items()}  # fmt: skip
    write_json(path, head)
    write_json(Path(path).with_name(CLASS_FILE), per_class)


def _load(path: Path, stage: str) -> dict:
    if not Path(path).is_file():
        raise DataError(f"{path}: not found; run the {stage} stage first (dvc repro)")
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


@dataclass(frozen=True)
class Cross:
    name: str  # the metric key: <images>_in_<space>
    images: str
    space: str


class Metrics:
    """Read access to metrics.json: models -> groups (unseen, seen, cross) -> datasets."""

    def __init__(self, data: dict):
        self.data = data

    @classmethod
    def read(cls, path: Path) -> Metrics:
        """metrics.json, with the per-class IoUs of class_iou.json beside it merged in."""
        data = _load(path, "evaluate")
        per_class = Path(path).with_name(CLASS_FILE)
        if per_class.is_file():
            for m, groups in _load(per_class, "evaluate").items():
                for g, group in groups.items():
                    for n, entry in group.items():
                        data.setdefault(m, {}).setdefault(g, {}).setdefault(n, {}).update(entry)
        return cls(data)

    @property
    def models(self) -> list[str]:
        return list(self.data)

    def _group(self, model: str, group: str) -> dict:
        return self.data.get(model, {}).get(group) or {}

    def has(self, model: str, group: str) -> bool:
        return bool(self._group(model, group))

    def datasets(self, group: str, model: str | None = None) -> list[str]:
        """The dataset (or cross pair) names scored in `group`, by one model or by any, in order."""
        names: list[str] = []
        for m in [model] if model else self.models:
            names += [n for n in self._group(m, group) if n not in MEAN_KEYS.values() and n not in names]
        return names

    def score(self, model: str, group: str, name: str, protocol: str = RESTRICTED) -> float | None:
        """mIoU (percent) of one dataset or cross pair under `protocol`."""
        entry = self._group(model, group).get(name)
        return entry.get(PROTOCOL_KEYS[protocol]) if isinstance(entry, dict) else None

    def mean(self, model: str, group: str, protocol: str = RESTRICTED) -> float | None:
        """The group's mean mIoU under `protocol`."""
        return self._group(model, group).get(MEAN_KEYS[PROTOCOL_KEYS[protocol]])

    def class_iou(self, model: str, group: str, name: str) -> dict[str, float]:
        entry = self._group(model, group).get(name)
        return dict(entry.get("iou", {})) if isinstance(entry, dict) else {}

    def readout(self, model: str, name: str | None = None, key: str = TOP1) -> float | None:
        """The union readout (percent; key TOP1 or CONFIDENT) of one training dataset's val images, or
        the mean over them (name None)."""
        if name is None:
            return self._group(model, "union").get(MEAN_KEYS[key])
        entry = self._group(model, "union").get(name)
        return entry.get(key) if isinstance(entry, dict) else None

    def readout_classes(self, model: str, name: str, key: str = TOP1) -> dict[str, float]:
        """{world class: percent} of the union readout of one training dataset's val images."""
        entry = self._group(model, "union").get(name)
        return dict(entry.get(CLASS_KEYS[key]) or {}) if isinstance(entry, dict) else {}

    def negative_void(self, model: str, name: str, key: str = NEGATIVE_VOID) -> float | None:
        """% of a test set's negative-frame pixels the model left void (abstain.py), None without them;
        key POSITIVE_VOID: the same share of its positive frames' pixels."""
        entry = self._group(model, "unseen").get(name)
        return entry.get(key) if isinstance(entry, dict) else None

    def reachable_cells(self, model: str, name: str) -> list[str]:
        """The full-union readout's cells a relation can reach, on one training dataset's val images."""
        entry = self._group(model, "union").get(name)
        return list(entry.get(REACHABLE_CELLS) or []) if isinstance(entry, dict) else []

    def headroom(self, model: str, name: str | None = None) -> float | None:
        """mIoU points an unseen set (or their mean, name None) would gain had every pixel of the classes
        a true relation can move been right (synthetic benchmark)."""
        group = self._group(model, "unseen")
        entry = group.get(MEAN_KEYS[HEADROOM]) if name is None else group.get(name)
        return entry.get(HEADROOM) if isinstance(entry, dict) else entry

    def cross(self, model: str) -> list[Cross]:
        """The cross-label-space entries of `model` with their image set and label space."""
        pairs = ((name, parse_cross(name)) for name in self.datasets("cross", model))
        return [Cross(name, *pair) for name, pair in pairs if pair]

    def value(self, dotted: str) -> float | None:
        """A number by its DVC metric key, e.g. "base.cross.mapillary_in_cityscapes.iou.rider"."""
        d = self.data
        for part in dotted.split("."):
            if not isinstance(d, dict) or part not in d:
                return None
            d = d[part]
        return float(d) if isinstance(d, int | float) and not isinstance(d, bool) else None


def write_relation_metrics(path: Path, metrics: dict) -> None:
    write_json(path, {"relations": metrics})


def read_relation_metrics(path: Path) -> dict | None:
    """The "relations" block of relations.json, or None when the file does not exist."""
    return _load(path, "relabel").get("relations", {}) if Path(path).is_file() else None


# --- The seeds headline (`make seeds`: uniseg/experiments/headline.py computes it) ---------------------


def headline_profile(params) -> dict:
    """What a headline was made from, beyond the seeds: the data source and the benchmark's size."""
    synthetic = params.synthetic.model_dump()
    return {"source": params.data.source, "synthetic": {k: v for k, v in synthetic.items() if k != "seed"}}


def write_headline(path: Path, headline: dict, markdown: str) -> None:
    """headline.json at `path` and its rendering, headline.md, beside it."""
    write_json(path, headline)
    write_text(Path(path).with_suffix(".md"), markdown)


def read_headline(path: Path) -> dict | None:
    """headline.json (`path` may name it or headline.md beside it), or None when there is none."""
    summary = Path(path).with_suffix(".json")
    return json.loads(summary.read_text(encoding="utf-8")) if summary.is_file() else None


def write_ladder(path: Path, ladder: dict) -> None:
    write_json(path, ladder, indent=1)


def read_ladder(params, path: Path) -> dict | None:
    """ladder.json with its curve's budgets and seeds as ints, when it says it was made from the same data
    source and benchmark size as `params` (as `headline_markdown`), else None."""
    path = Path(path)
    if not path.is_file():
        return None
    ladder = json.loads(path.read_text(encoding="utf-8"))
    if ladder.get("profile") != headline_profile(params):
        return None
    for key in ("curve", "unseen"):
        ladder[key] = {
            name: {int(b): {int(s): v for s, v in seeds.items()} for b, seeds in points.items()}
            for name, points in ladder.get(key, {}).items()
        }
    return ladder


def headline_markdown(params, path: Path) -> str | None:
    """headline.md's text when headline.json says it was made from the same data source and benchmark
    size as `params` (a real-data report never shows the synthetic headline), else None."""
    summary, markdown = read_headline(path), Path(path).with_suffix(".md")
    if summary is None or not markdown.is_file() or summary.get("profile") != headline_profile(params):
        return None
    return markdown.read_text(encoding="utf-8")
