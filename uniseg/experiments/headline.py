"""reports/headline.json and headline.md: the seeds headline, built from the stored per-(world, seed, arm)
results of `make seeds` (experiments/seeds.py); written and read through uniseg/scores.py, rendered by
uniseg/report/headline.py, judged against the targets of experiments/targets.py.

Per world: each arm's unseen and seen mean mIoU, union readout and headroom over seeds (mean, sample std,
95 % t-interval, the values in seed order), and the paired differences between arms that share a seed —
the comparisons the claims are about: Null BCE − CE (linear and cosine head), C-R BCE − its no-relations
control and − the oracle — each on the unseen mean, the seen mean, their difference (unseen − seen, the
paper's signature: a gain that is about generalisation shows on unseen sets beyond the seen ones) and
the union readout; per-class paired differences where the label conflicts live; the mined relations'
precision and recall; and the oracle rule's outcome. The top level of headline.json is the default
world (world 0); `worlds` holds every world.
"""

from __future__ import annotations

import json
import math
import statistics
from functools import cache
from pathlib import Path

from uniseg import scores
from uniseg.experiments.arms import ARMS
from uniseg.experiments.targets import judge
from uniseg.report.headline import render
from uniseg.scores import Metrics

PAIRS = {
    "nullbce_minus_ce": ("nullbce", "ce"),
    "nullbce_minus_ce_cosine": ("nullbce", "ce-cosine"),
    "crbce_minus_control": ("crbce", "control"),
    "crbce_minus_nullbce": ("crbce", "nullbce"),
    "oracle_minus_control": ("oracle", "control"),
    "oracle_out_minus_control": ("oracle-out", "control"),
    "crbce_paper_minus_nullbce": ("crbce-paper", "nullbce"),
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
RELATION_KEYS = (
    "tau",
    "relations",
    "precision",
    "recall",
    "expressible_precision",
    "expressible_recall",
    "outside_recall",
    "paper_recall",
    "recall_ceiling",
)
# The oracle rule (issue "judge each claim where it lives"), fixed before any result: below this headroom
# the unseen mean cannot show C-R BCE; from the second on, an oracle no better than its control means the
# method does not help even with perfect relations.
HEADROOM_SMALL, HEADROOM_LARGE = 0.3, 0.8
# Of the unseen set with negative frames: its positive frames' class mIoU, the same abstaining, the void %
# of its negative frames and of its positive frames.
NEGATIVES = ("class_miou", "abstain", "negative_void", "positive_void")
VOID_SHARES = {"negative_void": scores.NEGATIVE_VOID, "positive_void": scores.POSITIVE_VOID}
# The full-union readout (readout.py): the IoU over its cells and over the cells a relation can reach.
FULL_UNION = {"union_iou": scores.FULL_IOU, "union_iou_reachable": scores.FULL_IOU_REACHABLE}


@cache
def t95(df: int) -> float:
    """The two-sided 95 % quantile of Student's t with `df` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def summarise(values: list[float]) -> dict:
    """mean, sample std and a 95 % t-interval of per-seed values (percent). One seed has no spread: std and
    interval are None (not 0, which would read as certainty)."""
    n = len(values)
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if n > 1 else None
    half = t95(n - 1) * std / math.sqrt(n) if n > 1 else None
    return {
        "mean": round(mean, 2),
        "std": None if std is None else round(std, 2),
        "ci95": None if half is None else [round(mean - half, 2), round(mean + half, 2)],
        "per_seed": [round(v, 2) for v in values],
    }


def read_results(folder: Path) -> list[dict]:
    """Every stored result under `folder` (a profile's reports/seeds/<profile>/)."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(Path(folder).glob("world*/seed*.json"))]


def _value(record: dict, group: str, name: str | None = None, cls: str | None = None) -> float | None:
    """One number of a stored result: a group's mean mIoU, a dataset's mIoU or a class's IoU; for the
    group "union" the readout (mean or one training dataset's), for FULL_UNION its full-union IoU, for
    "headroom" the unseen headroom, for NEGATIVES those of the unseen set with negative frames."""
    m = Metrics({"m": record["metrics"]})
    if group == "union":
        return m.readout("m", name)
    if group in FULL_UNION:
        return m.readout("m", name, FULL_UNION[group])
    if group == "headroom":
        return m.headroom("m", name)
    if group in NEGATIVES:  # of the unseen set that has negative frames (WildDash 2)
        for dataset in m.datasets("unseen"):
            if m.negative_void("m", dataset) is not None:
                if group in VOID_SHARES:
                    return m.negative_void("m", dataset, VOID_SHARES[group])
                return m.score("m", "unseen", dataset, "abstain" if group == "abstain" else "restricted")
        return None
    if name is None:
        return m.mean("m", group)
    return m.score("m", group, name) if cls is None else m.class_iou("m", group, name).get(cls)


def _series(runs: dict, seeds: list[int], fn) -> tuple[list[int], list[float]]:
    pairs = [(s, fn(runs[s])) for s in seeds if s in runs]
    pairs = [(s, v) for s, v in pairs if v is not None]
    return [s for s, _ in pairs], [v for _, v in pairs]


def _arm(runs: dict, seeds: list[int]) -> dict:
    """One arm over seeds: unseen mean (with its seeds), seen mean, each unseen set, union readout,
    headroom, minutes per device."""
    ran, values = _series(runs, seeds, lambda r: _value(r, "unseen"))
    entry = {**summarise(values), "seeds": ran}
    for key in ("seen", "union", *FULL_UNION, "headroom", *NEGATIVES):
        found = _series(runs, seeds, lambda r, key=key: _value(r, key))[1]
        if found:
            entry[key] = summarise(found)
    names = Metrics({"m": next(iter(runs.values()))["metrics"]}).datasets("unseen")
    entry["unseen"] = {
        d: summarise(_series(runs, seeds, lambda r, d=d: _value(r, "unseen", d))[1]) for d in names
    }
    by_device: dict[str, list[int]] = {}  # a run's cost depends on where it ran: kept apart
    for r in runs.values():
        by_device.setdefault(r.get("device", "not recorded"), []).append(r["seconds"])
    entry["minutes"] = {d: round(statistics.fmean(s) / 60, 1) for d, s in by_device.items()}
    return entry


def _paired(a: dict, b: dict, seeds: list[int]) -> dict | None:
    """Arm a − arm b per shared seed: the unseen mean (top level), the seen mean, unseen − seen (the
    signature), the union readout, the full-union IoU and, on the set with negative frames (WildDash 2),
    its class mIoU, the same abstaining and the negative and positive frames' void shares."""
    common = [s for s in seeds if s in a and s in b and _value(a[s], "unseen") is not None]
    if not common:
        return None
    diff = {g: [_value(a[s], g) - _value(b[s], g) for s in common] for g in ("unseen", "seen")}
    out = {**summarise(diff["unseen"]), "seeds": common}
    out["seen"] = summarise(diff["seen"])
    out["signature"] = summarise([u - v for u, v in zip(diff["unseen"], diff["seen"], strict=True)])
    for key in ("union", *FULL_UNION, *NEGATIVES):
        found = [(s, _value(a[s], key), _value(b[s], key)) for s in common]
        found = [(s, x - y) for s, x, y in found if x is not None and y is not None]
        if found:
            out[key] = {**summarise([d for _, d in found]), "seeds": [s for s, _ in found]}
    return out


def _per_class(a: dict, b: dict, seeds: list[int]) -> dict:
    out = {}
    for group, dataset, cls in CLASSES:
        pairs = [(_value(a[s], group, dataset, cls), _value(b[s], group, dataset, cls)) for s in seeds]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        if pairs:
            out[f"{group}.{dataset}.{cls}"] = summarise([x - y for x, y in pairs])
    return out


def _relations(mined: dict, seeds: list[int]) -> dict:
    """Mean relation scores over seeds, per candidate rule (the run's and the other one)."""
    out = {}
    for block, getter in (("candidates", lambda r: r), ("other_rule", lambda r: r.get("other_rule", {}))):
        rel = {}
        for key in RELATION_KEYS:
            values = [getter(mined[s]["relations"]).get(key) for s in seeds if s in mined]
            values = [v for v in values if v is not None]
            if values:
                rel[key] = summarise(values)
        rule = next((getter(r["relations"]).get("candidates") for r in mined.values()), None)
        if rel:
            out[rule or block] = rel
    return out


def oracle_rule(h: dict) -> str | None:
    """The oracle rule's outcome on one world's headline, in one sentence (None without oracle seeds)."""
    control, oracle = h["arms"].get("control", {}), h["paired"].get("oracle_minus_control")
    mined = h["paired"].get("crbce_minus_control")
    if "headroom" not in control or oracle is None or mined is None:
        return None
    headroom = control["headroom"]["mean"]

    def verdict(d: dict) -> str:
        ci = d["ci95"]
        return "≈ 0" if ci is None or ci[0] <= 0 <= ci[1] else ("> 0" if ci[0] > 0 else "< 0")

    said = (
        f"headroom {headroom:.2f}, oracle − control {oracle['mean']:+.2f} ({verdict(oracle)}), "
        f"C-R BCE − control {mined['mean']:+.2f} ({verdict(mined)}), over {len(oracle['seeds'])} seeds"
    )
    if headroom < HEADROOM_SMALL:
        union = mined.get("union")
        on_union = (
            "" if union is None else f" (there: C-R BCE − control {union['mean']:+.2f}, {verdict(union)})"
        )
        return f"{said}: the unseen mean cannot show C-R BCE; it is judged on the union readout{on_union}."
    if headroom >= HEADROOM_LARGE and verdict(oracle) == "≈ 0":
        return f"{said}: the method does not help even with perfect relations."
    if verdict(oracle) == "> 0" and verdict(mined) == "≈ 0":
        return f"{said}: mining is the bottleneck."
    return f"{said}: none of the rule's cases (headroom between {HEADROOM_SMALL} and {HEADROOM_LARGE}, or the oracle's sign decides nothing)."


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
        out["arms"][arm] = _arm(by_arm[arm], seeds)
    for name, (a, b) in PAIRS.items():
        if a in by_arm and b in by_arm and (paired := _paired(by_arm[a], by_arm[b], seeds)):
            out["paired"][name] = paired
            out["classes"][name] = _per_class(by_arm[a], by_arm[b], paired["seeds"])
    out["relations"] = _relations(by_arm.get("crbce") or by_arm.get("nullbce") or {}, seeds)
    out["oracle_rule"] = oracle_rule(out)
    return out


EMPTY = {"seeds": [], "arms": {}, "paired": {}, "classes": {}, "relations": {}, "devices": {}}


def collect(records: list[dict], default_world: int = 0) -> dict:
    """headline.json: the default world's headline at the top level, every world under "worlds"."""
    worlds = {}
    for w in sorted({r["world"] for r in records}):
        worlds[str(w)] = world_headline([r for r in records if r["world"] == w])
    out = {**worlds.get(str(default_world), EMPTY), "default_world": default_world, "worlds": worlds}
    return {**out, "targets": judge(out)}


def write_headline(
    results: Path, out: Path, default_world: int = 0, keep=lambda record: True, profile: dict | None = None
) -> dict:
    """Build headline.json/.md from the stored results that `keep` accepts (the current ones)."""
    headline = collect([r for r in read_results(results) if keep(r)], default_world)
    headline["profile"] = profile or {}
    scores.write_headline(out, headline, render(headline))
    return headline
