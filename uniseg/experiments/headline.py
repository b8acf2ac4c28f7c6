"""reports/headline.json and headline.md: the seeds headline, built from the stored per-(world, seed, arm)
results of `make seeds` (experiments/seeds.py) — the one owner of that format.

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

from uniseg.fsio import write_json, write_text
from uniseg.scores import Metrics

TITLES = {
    "ce": "CE, linear head (the paper's multi-dataset baseline)",
    "ce-cosine": "CE, cosine head",
    "nullbce": "Null BCE (cosine head)",
    "crbce": "C-R BCE: the Null BCE model + retrain.iters with the mined relations",
    "control": "control: the same Null BCE model + retrain.iters without relations",
}
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
    ("cross", "mapillary_in_cityscapes", "rider"),
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
    for arm in (a for a in TITLES if a in by_arm):
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
    return {**out, "targets": targets(out)}


def _interval(d: dict) -> str:
    return f"[{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}]" if d["ci95"] else "(one seed)"


def targets(headline: dict) -> list[dict]:
    """The benchmark's acceptance targets, judged on the headline: on the default world Null BCE − CE
    (linear head) ≥ +1.5 with its 95 % interval above 0 over ≥ 5 seeds; on every other world the same
    sign; on each world C-R BCE − control ≥ 0 and the mined relations' precision and recall (the run's
    candidate rule, automatic τ, mean over seeds) ≥ 0.8."""
    rows = []
    default = headline["worlds"].get(str(headline["default_world"]), {})
    sign = default.get("paired", {}).get("nullbce_minus_ce", {}).get("mean")
    for world, h in headline["worlds"].items():
        d = h["paired"].get("nullbce_minus_ce")
        if d and int(world) == headline["default_world"]:
            met = d["mean"] >= 1.5 and d["ci95"] is not None and d["ci95"][0] > 0 and len(d["seeds"]) >= 5
            rows.append(
                (world, "Null BCE − CE (linear head) ≥ +1.5, 95 % interval above 0, ≥ 5 seeds", d, met)
            )
        elif d and sign is not None:
            rows.append(
                (world, "Null BCE − CE (linear head): the default world's sign", d, d["mean"] * sign > 0)
            )
        c = h["paired"].get("crbce_minus_control")
        if c:
            rows.append((world, "C-R BCE − control ≥ 0", c, c["mean"] >= 0))
        rel = next(iter(h["relations"].values()), {})
        if "precision" in rel and "recall" in rel:
            pr, rc = rel["precision"]["mean"], rel["recall"]["mean"]
            rows.append(
                (
                    world,
                    "mined relations: precision and recall ≥ 0.8",
                    f"{pr:.2f} / {rc:.2f}",
                    pr >= 0.8 and rc >= 0.8,
                )
            )
    return [
        {
            "world": int(world),
            "target": target,
            "measured": v
            if isinstance(v, str)
            else f"{v['mean']:+.2f} {_interval(v)}, {len(v['seeds'])} seeds",
            "met": met,
        }
        for world, target, v, met in rows
    ]


def _fmt(h: dict, digits: int = 1) -> str:
    if h["ci95"] is None:
        return f"{h['mean']:.{digits}f} (one seed) | –"
    return f"{h['mean']:.{digits}f} ± {h['std']:.{digits}f} | [{h['ci95'][0]:.{digits}f}, {h['ci95'][1]:.{digits}f}]"


def render(headline: dict) -> str:
    """headline.md."""
    lines = [
        "# Headline over seeds (embedded synthetic benchmark)",
        "",
        "Unseen mean mIoU (%) of KITTI, WildDash and CamVid, restricted protocol; mean ± sample std and a 95 % "
        "t-interval over seeds. Paired: the difference of two arms on the same seed (same data, same initial "
        "weights), then its mean and interval — the comparisons the paper's claims are about.",
    ]
    if headline.get("targets"):
        lines += ["", "## Targets", "", "| world | target | measured | met |", "|---|---|---|---|"]
        lines += [
            f"| {t['world']} | {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |"
            for t in headline["targets"]
        ]
        lines += [
            "",
            'Where a target is missed, the per-class differences below and docs/findings.md ("What the '
            'faithful benchmark shows") give the diagnosis.',
        ]
    for world, h in headline["worlds"].items():
        default = " (the default world)" if int(world) == headline["default_world"] else ""
        lines += ["", f"## World {world}{default}: seeds {', '.join(map(str, h['seeds']))}", ""]
        if h.get("devices"):
            where = "; ".join(f"{d}: seeds {', '.join(map(str, s))}" for d, s in h["devices"].items())
            lines += [f"Computed on {where}.", ""]
        lines += [
            "| arm | what | unseen mean | 95 % interval | per seed | seen mean | minutes per seed |",
            "|---|---|---|---|---|---|---:|",
        ]
        for arm, a in h["arms"].items():
            only = "" if a["seeds"] == h["seeds"] else f" (seeds {', '.join(map(str, a['seeds']))})"
            lines.append(
                f"| {arm} | {TITLES[arm]}{only} | {_fmt(a)} | {', '.join(f'{v:.1f}' for v in a['per_seed'])} | "
                f"{a['seen']['mean']:.1f} | {', '.join(f'{m} ({d})' for d, m in a['minutes'].items())} |"
            )
        if h["paired"]:
            lines += [
                "",
                "| paired difference | mean ± std | 95 % interval | per seed |",
                "|---|---|---|---|",
            ]
            for name, d in h["paired"].items():
                lines.append(f"| {name} | {_fmt(d, 2)} | {', '.join(f'{v:+.1f}' for v in d['per_seed'])} |")
        for name in ("nullbce_minus_ce", "nullbce_minus_ce_cosine", "crbce_minus_control"):
            per_class = h["classes"].get(name)
            if per_class:
                lines += [
                    "",
                    f"Per class, {name} (IoU points):",
                    "",
                    "| class | mean ± std | 95 % interval |",
                    "|---|---|---|",
                ]
                lines += [f"| {key} | {_fmt(d)} |" for key, d in per_class.items()]
        for rule, rel in h["relations"].items():
            cells = ", ".join(f"{k} {v['mean']:.2f}" for k, v in rel.items())
            lines += [
                "",
                f"Relations mined from the Null BCE models, candidates `{rule}` (mean over seeds): {cells}.",
            ]
    return "\n".join(lines) + "\n"


def profile_of(params) -> dict:
    """What a headline was made from, beyond the seeds: the data source and the benchmark's size."""
    synthetic = params.synthetic.model_dump()
    return {"source": params.data.source, "synthetic": {k: v for k, v in synthetic.items() if k != "seed"}}


def write_headline(
    results: Path, out: Path, default_world: int = 0, keep=lambda record: True, profile: dict | None = None
) -> dict:
    """Build headline.json/.md from the stored results that `keep` accepts (the current ones)."""
    headline = collect([r for r in read_results(results) if keep(r)], default_world)
    headline["profile"] = profile or {}
    write_json(out, headline)
    write_text(out.with_suffix(".md"), render(headline))
    return headline


def headline_for(params, markdown: Path) -> str | None:
    """headline.md's text when its headline.json says it was made from the same data source and
    benchmark size as `params` (a real-data report never shows the synthetic headline), else None."""
    summary = read_headline(markdown)
    if summary is None or not Path(markdown).is_file():
        return None
    made_from = summary.get("profile")
    return Path(markdown).read_text(encoding="utf-8") if made_from == profile_of(params) else None


def read_headline(markdown: Path) -> dict | None:
    """headline.json beside `markdown` (headline.md), or None when there is none."""
    summary = Path(markdown).with_suffix(".json")
    return json.loads(summary.read_text(encoding="utf-8")) if summary.is_file() else None
