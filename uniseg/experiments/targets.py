"""The benchmark's targets, as data, judged on a headline (experiments/headline.py).

A target names what it judges — a paired difference (`paired.<name>`) or mean relation scores
(`relations.<key>`, the run's candidate rule, automatic τ, mean over seeds) — the bar, whether the 95 %
interval must lie above 0, the seeds it needs, and the worlds it applies to: the default world, every
other world (judged by the default world's sign: the claim's direction must hold on another world), or
all of them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    text: str  # as the targets table shows it
    measures: tuple[str, ...]  # "paired.<pair>" or "relations.<key>"; several: each must meet the bar
    at_least: float | None = None  # the bar for the mean
    interval_above_zero: bool = False
    min_seeds: int = 0
    worlds: str = "all"  # "default", "others" (the default world's sign), "all"


TARGETS = (
    Target(
        "Null BCE − CE (linear head) ≥ +1.5, 95 % interval above 0, ≥ 5 seeds",
        ("paired.nullbce_minus_ce",),
        at_least=1.5,
        interval_above_zero=True,
        min_seeds=5,
        worlds="default",
    ),
    Target(
        "Null BCE − CE (linear head): the default world's sign", ("paired.nullbce_minus_ce",), worlds="others"
    ),
    Target("C-R BCE − control ≥ 0", ("paired.crbce_minus_control",), at_least=0.0),
    Target(
        "mined relations: precision and recall ≥ 0.8",
        ("relations.precision", "relations.recall"),
        at_least=0.8,
    ),
)


def _measure(world: dict, measure: str) -> dict | None:
    """The summary ({"mean", "ci95", "seeds", ...}) a measure names in one world's headline."""
    kind, _, name = measure.partition(".")
    if kind == "paired":
        return world["paired"].get(name)
    rules = world["relations"]
    return next(iter(rules.values()), {}).get(name) if rules else None


def _interval(d: dict) -> str:
    return f"[{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}]" if d["ci95"] else "(one seed)"


def _judge(target: Target, values: list[dict], sign: float | None) -> bool:
    if target.worlds == "others":
        return sign is not None and all(v["mean"] * sign > 0 for v in values)
    met = all(v["mean"] >= target.at_least for v in values) if target.at_least is not None else True
    if target.interval_above_zero:
        met &= all(v["ci95"] is not None and v["ci95"][0] > 0 for v in values)
    return met and all(len(v.get("seeds", [])) >= target.min_seeds for v in values if target.min_seeds)


def judge(headline: dict, targets=TARGETS) -> list[dict]:
    """[{"world", "target", "measured", "met"}] per world, in the order of `targets`."""
    default = str(headline["default_world"])
    rows = []
    for world, h in headline["worlds"].items():
        for target in targets:
            if (target.worlds == "default") != (world == default) and target.worlds != "all":
                continue
            values = [_measure(h, m) for m in target.measures]
            if any(v is None for v in values):
                continue
            reference = _measure(
                headline["worlds"].get(default, {"paired": {}, "relations": {}}), target.measures[0]
            )
            sign = reference["mean"] if reference else None
            if target.worlds == "others" and sign is None:
                continue
            if len(values) > 1:
                measured = " / ".join(f"{v['mean']:.2f}" for v in values)
            else:
                measured = f"{values[0]['mean']:+.2f} {_interval(values[0])}, {len(values[0]['seeds'])} seeds"
            rows.append(
                {
                    "world": int(world),
                    "target": target.text,
                    "measured": measured,
                    "met": _judge(target, values, sign),
                }
            )
    return rows
