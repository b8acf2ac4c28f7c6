"""reports/headline.json and headline.md: the seeds headline, built from the stored per-(world, seed, arm)
results of `make seeds` (experiments/seeds.py); written and read through uniseg/scores.py, rendered by
uniseg/report/headline.py, judged against the targets of experiments/targets.py.

Per world: each arm's unseen mean mIoU over seeds (mean, sample std, 95 % t-interval, the values in seed
order), and the paired differences between arms that share a seed — the comparisons the claims are
about: Null BCE − CE (linear head), C-R BCE − its no-relations control — with per-class paired
differences where the label conflicts live, and the mined relations' precision and recall. The top
level of headline.json is the default world (world 0); `worlds` holds every world.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from uniseg import scores
from uniseg.experiments.seeds import ARMS
from uniseg.experiments.targets import judge
from uniseg.report.headline import render
from uniseg.scores import Metrics

PAIRS = {
    "nullbce_minus_ce": ("nullbce", "ce"),
    "crbce_minus_control": ("crbce", "control"),
    "crbce_minus_nullbce": ("crbce", "nullbce"),
    "nullbce_minus_ce_cosine": ("nullbce", "ce-cosine"),
}
# Per-class IoUs where the benchmark's label conflicts touch the scored classes (docs/benchmark.md).
CLASSES = (
    ("unseen", "kitti", "terrain"),
    ("unseen", "wilddash", "terrain"),
    ("unseen", "kitti", "rider"),
    ("unseen", "wilddash", "rider"),
    ("unseen", "camvid", "bicyclist"),
    ("cross", scores.cross_name("mapillary", "cityscapes"), "rider"),
    ("unseen", "kitti", "road"),
    ("unseen", "camvid", "road"),
    ("unseen", "kitti", "sidewalk"),
    ("unseen", "kitti", "pole"),
    ("unseen", "kitti", "traffic sign"),  # small classes no convention touches: the optimisation effect
    ("unseen", "kitti", "bicycle"),
)
RELATION_KEYS = ("tau", "relations", "precision", "recall", "expressible_precision", "expressible_recall")
# Two-sided 95 % quantiles of Student's t for n - 1 degrees of freedom.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def summarise(values: list[float]) -> dict:
    """mean, sample std and a 95 % t-interval of per-seed values (percent). One seed has no spread: std and
    interval are None (not 0, which would read as certainty)."""
    n = len(values)
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if n > 1 else None
    half = T95.get(n - 1, 2.0) * std / math.sqrt(n) if n > 1 else None
    return {
        "mean": round(mean, 2),
        "std": None if std is None else round(std, 2),
        "ci95": None if half is None else [round(mean - half, 2), round(mean + half, 2)],
        "per_seed": [round(v, 2) for v in values],
    }


def read_results(folder: Path) -> list[dict]:
    """Every stored result under reports/seeds/."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(Path(folder).glob("world*/seed*.json"))]


def _value(record: dict, group: str, name: str | None = None, cls: str | None = None) -> float | None:
    m = Metrics({"m": record["metrics"]})
    if name is None:
        return m.mean("m", group)
    return m.score("m", group, name) if cls is None else m.class_iou("m", group, name).get(cls)


def _series(runs: dict, seeds: list[int], fn) -> tuple[list[int], list[float]]:
    pairs = [(s, fn(runs[s])) for s in seeds if s in runs]
    pairs = [(s, v) for s, v in pairs if v is not None]
    return [s for s, _ in pairs], [v for _, v in pairs]


def world_headline(records: list[dict]) -> dict:
    """The headline of one world's records."""
    by_arm: dict[str, dict[int, dict]] = {}
    for r in records:
        by_arm.setdefault(r["arm"], {})[r["seed"]] = r
    seeds = sorted({r["seed"] for r in records})
    out: dict = {"seeds": seeds, "arms": {}, "paired": {}, "classes": {}, "relations": {}, "devices": {}}
    for r in sorted(records, key=lambda r: r["seed"]):
        seeds_on = out["devices"].setdefault(r.get("device", "not recorded"), [])
        if r["seed"] not in seeds_on:
            seeds_on.append(r["seed"])
    for arm in (a for a in ARMS if a in by_arm):
        runs = by_arm[arm]
        ran, values = _series(runs, seeds, lambda r: _value(r, "unseen"))
        entry = {**summarise(values), "seeds": ran}
        entry["seen"] = summarise(_series(runs, seeds, lambda r: _value(r, "seen"))[1])
        names = Metrics({"m": next(iter(runs.values()))["metrics"]}).datasets("unseen")
        entry["unseen"] = {
            d: summarise(_series(runs, seeds, lambda r, d=d: _value(r, "unseen", d))[1]) for d in names
        }
        by_device: dict[str, list[int]] = {}  # a run's cost depends on where it ran: kept apart
        for r in runs.values():
            by_device.setdefault(r.get("device", "not recorded"), []).append(r["seconds"])
        entry["minutes"] = {d: round(statistics.fmean(s) / 60, 1) for d, s in by_device.items()}
        out["arms"][arm] = entry
    for name, (a, b) in PAIRS.items():
        if a not in by_arm or b not in by_arm:
            continue
        common = [s for s in seeds if s in by_arm[a] and s in by_arm[b]]
        diffs = [_value(by_arm[a][s], "unseen") - _value(by_arm[b][s], "unseen") for s in common]
        out["paired"][name] = {**summarise(diffs), "seeds": common}
        per_class = {}
        for group, dataset, cls in CLASSES:
            pairs = [
                (_value(by_arm[a][s], group, dataset, cls), _value(by_arm[b][s], group, dataset, cls))
                for s in common
            ]
            pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
            if pairs:
                per_class[f"{group}.{dataset}.{cls}"] = summarise([x - y for x, y in pairs])
        out["classes"][name] = per_class
    mined = by_arm.get("crbce") or by_arm.get("nullbce") or {}
    for block, getter in (("candidates", lambda r: r), ("other_rule", lambda r: r.get("other_rule", {}))):
        rel = {}
        for key in RELATION_KEYS:
            values = [getter(mined[s]["relations"]).get(key) for s in seeds if s in mined]
            values = [v for v in values if v is not None]
            if values:
                rel[key] = summarise(values)
        rule = next((getter(r["relations"]).get("candidates") for r in mined.values()), None)
        if rel:
            out["relations"][rule or block] = rel
    return out


def collect(records: list[dict], default_world: int = 0) -> dict:
    """headline.json: the default world's headline at the top level, every world under "worlds"."""
    worlds = {}
    for w in sorted({r["world"] for r in records}):
        worlds[str(w)] = world_headline([r for r in records if r["world"] == w])
    top = worlds.get(
        str(default_world),
        {"seeds": [], "arms": {}, "paired": {}, "classes": {}, "relations": {}, "devices": {}},
    )
    out = {**top, "default_world": default_world, "worlds": worlds}
    return {**out, "targets": judge(out)}


def write_headline(
    results: Path, out: Path, default_world: int = 0, keep=lambda record: True, profile: dict | None = None
) -> dict:
    """Build headline.json/.md from the stored results that `keep` accepts (the current ones)."""
    headline = collect([r for r in read_results(results) if keep(r)], default_world)
    headline["profile"] = profile or {}
    scores.write_headline(out, headline, render(headline))
    return headline
