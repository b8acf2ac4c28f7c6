"""The benchmark's targets, as data, judged on a headline (experiments/headline.py).

A target is one or more checks, each naming what it judges — a paired difference on the unseen mean
(`paired.<pair>`), on the seen mean, its signature unseen − seen, the union readout or its full-union
IoU (`paired.<pair>.seen|signature|union|union_iou|union_iou_reachable`), or mean relation scores (`relations.<key>`: the run's candidate
rule, automatic τ, mean over seeds) — with its bar, whether the 95 % interval must lie above 0 and the
seeds it needs; and the worlds it applies to: the default world, every other world (judged by the
default world's sign: the claim's direction must hold on another world), or all of them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    measure: str  # "paired.<pair>[.seen|.signature|.union]" or "relations.<key>"
    at_least: float | None = None  # the bar for the mean (strictly above it when `above`)
    above: bool = False
    interval_above_zero: bool = False
    min_seeds: int = 0


@dataclass(frozen=True)
class Target:
    text: str  # as the targets table shows it
    checks: tuple[Check, ...]  # all must hold
    worlds: str = "all"  # "default", "others" (the default world's sign), "all"


TARGETS = (
    Target("Null BCE − CE (cosine head) ≥ 0", (Check("paired.nullbce_minus_ce_cosine", 0.0),)),
    Target(
        "Null BCE − CE (linear head) ≥ +1.5, 95 % interval above 0, ≥ 5 seeds; unseen − seen > 0",
        (
            Check("paired.nullbce_minus_ce", 1.5, interval_above_zero=True, min_seeds=5),
            Check("paired.nullbce_minus_ce.signature", 0.0, above=True),
        ),
        worlds="default",
    ),
    Target(
        "Null BCE − CE (linear head): the default world's sign", (Check("paired.nullbce_minus_ce"),), "others"
    ),
    # C-R BCE's targets are met only when the 95 % interval lies above 0 (docs/findings.md, pre-registered
    # before the verdict's runs): a point estimate ≥ 0 is met by a null.
    Target(
        "C-R BCE − control > 0 on the union readout, 95 % interval above 0",
        (Check("paired.crbce_minus_control.union", interval_above_zero=True),),
    ),
    Target(
        "C-R BCE − control > 0 on the full-union IoU of the reachable cells, 95 % interval above 0",
        (Check("paired.crbce_minus_control.union_iou_reachable", interval_above_zero=True),),
    ),
    Target(
        "mined relations: precision ≥ 0.8, Table A-1 recall ≥ 5/6",
        (Check("relations.precision", 0.8), Check("relations.paper_recall", 5 / 6 - 1e-9)),
    ),
)


def _measure(world: dict, measure: str) -> dict | None:
    """The summary ({"mean", "ci95", "seeds", ...}) a measure names in one world's headline."""
    kind, _, rest = measure.partition(".")
    if kind == "relations":
        rules = world.get("relations") or {}
        return next(iter(rules.values()), {}).get(rest) if rules else None
    name, _, part = rest.partition(".")
    found = world.get("paired", {}).get(name)
    return (found.get(part) if part else found) if found else None


def _interval(d: dict) -> str:
    return f"[{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}]" if d.get("ci95") else "(one seed)"


def _met(check: Check, d: dict) -> bool:
    ok = True
    if check.at_least is not None:
        ok = d["mean"] > check.at_least if check.above else d["mean"] >= check.at_least
    if check.interval_above_zero:
        ok &= d.get("ci95") is not None and d["ci95"][0] > 0
    return ok and (not check.min_seeds or len(d.get("seeds", [])) >= check.min_seeds)


def _shown(check: Check, d: dict) -> str:
    if check.measure.startswith("relations."):
        return f"{d['mean']:.2f}"
    seeds = f", {len(d['seeds'])} seeds" if "seeds" in d else ""
    return f"{d['mean']:+.2f} {_interval(d)}{seeds}"


def judge(headline: dict, targets=TARGETS) -> list[dict]:
    """[{"world", "target", "measured", "met"}] per world, in the order of `targets`; a target whose
    measures a world lacks is left out there."""
    default = str(headline["default_world"])
    reference = headline["worlds"].get(default, {})
    rows = []
    for world, h in headline["worlds"].items():
        for target in targets:
            if target.worlds != "all" and (target.worlds == "default") != (world == default):
                continue
            values = [_measure(h, c.measure) for c in target.checks]
            if any(v is None for v in values):
                continue
            if target.worlds == "others":
                sign = _measure(reference, target.checks[0].measure)
                if sign is None:
                    continue
                met = values[0]["mean"] * sign["mean"] > 0
            else:
                met = all(_met(c, v) for c, v in zip(target.checks, values, strict=True))
            measured = "; ".join(_shown(c, v) for c, v in zip(target.checks, values, strict=True))
            rows.append({"world": int(world), "target": target.text, "measured": measured, "met": met})
    return rows


def _bars(check: Check) -> list[float]:
    """The values a check's 95 % interval must not contain for its verdict to stand: its bar and, where
    the interval must lie above 0 or the check is a sign (no bar), 0."""
    bars = [] if check.at_least is None else [check.at_least]
    return bars + [0.0] if check.interval_above_zero or check.at_least is None else bars


def undecided(headline: dict, world: int, targets=TARGETS) -> list[str]:
    """The pairs (experiments/headline.py PAIRS) of one world whose target more seeds could still decide
    the other way: the 95 % interval of a check straddles one of its bars (or there is only one seed), or
    the check asks for more seeds than it has. The converged verdict runs seeds 3-4 for their arms."""
    h = headline["worlds"].get(str(world))
    if h is None:
        return []
    default = world == headline["default_world"]
    out = []
    for target in targets:
        if target.worlds != "all" and (target.worlds == "default") != default:
            continue
        for check in target.checks:
            kind, _, rest = check.measure.partition(".")
            d = _measure(h, check.measure)
            if kind != "paired" or d is None:
                continue
            ci, seeds = d.get("ci95"), d.get("seeds", [])
            straddles = ci is None or any(ci[0] <= bar <= ci[1] for bar in _bars(check))
            if straddles or len(seeds) < check.min_seeds:
                out.append(rest.partition(".")[0])
    return list(dict.fromkeys(out))
