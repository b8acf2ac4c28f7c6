"""The budget ladder: the converged verdict's training budget, decided on the seen val splits only.

The rule, fixed before the first rung ran (docs/findings.md, "The budget ladder"): B* is the smallest base
budget B of the ladder where doubling it (B -> 2B) gains less than `MIN_GAIN` (0.5) seen mIoU for every
arm of `ARMS` (CE linear, CE cosine, Null BCE). A doubling is first judged on seed 0; the one that meets
the rule there — the deciding pair (B*, 2B*) — is judged on the mean of seeds 0 and 1 (one seed's spread
of Null BCE's seen mean is 0.8 mIoU), and B* is fixed only when that mean meets it too. If no doubling up to
the last rung meets the rule, B* is the last rung — the longest budget this machine affords — and every
report says the budget is not converged, with the last doubling's gains. The retrain budget is
R* = B*/3 (AdamW, as now).

Each rung is a profile of its own, derived from the ladder's params file (params.ladder.yaml: the
converged run's settings, bf16 on a CPU that has bf16 units): `<profile>-b<B>`, with train.iters = B,
retrain.iters = B // 3 and no unseen set scored until B* is fixed (`unseen=True` then scores them: the
models are kept, only the evaluation reruns). Results in reports/seeds/<profile>-b<B>/, models in
.seeds/<profile>-b<B>/; the ladder's numbers in reports/seeds/<profile>/ladder.json.

The rungs' models (`.seeds/<profile>-b<B>/world0/seed<S>/<arm>.pt` and the `.fingerprint` stamp beside
each) are committed with the results (`git add -f`; .seeds/ is otherwise not in git): the ladder spans
more working periods than a machine keeps its files, and seeds 0-1 at B* — the verdict's — and the
unseen scoring of every rung then need no retraining (about 6 MB a model).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from uniseg.errors import UserError
from uniseg.fsio import write_text
from uniseg.params import load_params

BUDGETS = (1600, 3200, 6400, 12800)
ARMS = ("ce", "ce-cosine", "nullbce")
SEEDS = (0, 1)  # seed 0 scans the ladder; seeds 0 and 1 decide the deciding pair
MIN_GAIN = 0.5  # seen mIoU points per doubling
RETRAIN_SHARE = 3  # R* = B* / 3
WORLD = 0


def rung_name(profile: str, budget: int) -> str:
    return f"{profile}-b{budget}"


def write_rung_params(params_file: Path, budget: int, out: Path, unseen: bool = False) -> Path:
    """The rung's params file at `out`: the ladder profile with train.iters = `budget`, retrain.iters =
    budget // 3 and, until the budget is fixed (`unseen` False), no unseen set scored."""
    p = load_params(params_file).model_dump()
    p["train"]["iters"] = budget
    p["retrain"]["iters"] = budget // RETRAIN_SHARE
    if not unseen:
        p["evaluate"]["unseen"] = []
    write_text(out, yaml.safe_dump(p, sort_keys=False))
    return out


CONVERGED_HEADER = """\
# The converged profile (`make converged`), written by `python -m uniseg.experiments converged` from the
# budget ladder's decision (reports/seeds/{profile}/ladder.json): the ladder's profile at B* = {budget}
# and R* = {retrain} iterations ({verdict}), scoring the unseen sets. Do not edit: rerun the command.
"""


def write_converged(params_file: Path, decision: dict, out: Path, profile: str) -> Path:
    """The converged profile at `out`: the ladder's params at B* and R* (the rung B*'s params with the unseen
    sets scored), with a header saying where it came from. UserError while the rule has not fixed B*."""
    if decision.get("budget") is None:
        raise UserError(f"the ladder has not fixed B* yet: {decision.get('reason')} (`make ladder` goes on)")
    write_rung_params(params_file, decision["budget"], out, unseen=True)
    verdict = "converged by the rule" if decision["converged"] else "not converged: the longest rung"
    header = CONVERGED_HEADER.format(profile=profile, verdict=verdict, **decision)
    write_text(out, header + out.read_text(encoding="utf-8"))
    return out


def adopt_models(rung, converged, seeds=SEEDS, arms=ARMS, world: int = WORLD) -> list[Path]:
    """Copy the rung B*'s kept models with their fingerprint stamps, and its results, from the rung's
    runner (experiments/seeds.Runner: `.seeds/<profile>-b<B*>/`, `reports/seeds/<profile>-b<B*>/`) to the
    converged profile's: the same params, code and data give the same training fingerprint, so the
    runner scores them on the unseen sets instead of training them again, and keeps the rung's record
    of what training them cost (seconds, device, precision). Returns the copies."""
    import shutil

    copied = []
    for seed in seeds:
        for arm in arms:
            model, result = rung._model(world, seed, arm), rung.result_path(world, seed, arm)
            if not model.is_file():
                continue
            pairs = [
                (model, converged._model(world, seed, arm)),
                (
                    model.with_suffix(".fingerprint"),
                    converged._model(world, seed, arm).with_suffix(".fingerprint"),
                ),
                (result, converged.result_path(world, seed, arm)),
            ]
            for path, target in pairs:
                if path.is_file() and not target.is_file():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target)
                    copied.append(target)
    return copied


def seen_mean(record: dict) -> float | None:
    return record["metrics"].get("seen", {}).get("mean")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def decide(curve: dict, budgets=BUDGETS, arms=ARMS, seeds=SEEDS, min_gain: float = MIN_GAIN) -> dict:
    """Apply the rule to `curve` = {arm: {budget: {seed: seen mean}}}. Returns {"budget": B* or None,
    "retrain": R* or None, "converged": bool or None, "doublings": [{"from", "to", "seeds", "gains": {arm:
    gain}, "meets"}], "needs": [(budget, seed)] the runs the rule waits for, "reason": one sentence}."""
    doublings, last = [], None

    def gains(b: int, b2: int, use: tuple[int, ...]) -> dict | None:
        out = {}
        for arm in arms:
            points = curve.get(arm, {})
            lo, hi = points.get(b, {}), points.get(b2, {})
            if any(s not in lo or s not in hi for s in use):
                return None
            out[arm] = round(_mean([hi[s] for s in use]) - _mean([lo[s] for s in use]), 2)
        return out

    def missing(b: int, b2: int, use: tuple[int, ...]) -> list[tuple[int, int]]:
        return sorted(
            {(x, s) for x in (b, b2) for s in use for arm in arms if s not in curve.get(arm, {}).get(x, {})}
        )

    for b, b2 in zip(budgets, budgets[1:], strict=False):
        first = gains(b, b2, seeds[:1])
        if first is None:
            return _pending(
                doublings, missing(b, b2, seeds[:1]), f"waiting for seed {seeds[0]} at {b} and {b2}"
            )
        if any(g >= min_gain for g in first.values()):
            last = {"from": b, "to": b2, "seeds": list(seeds[:1]), "gains": first, "meets": False}
            doublings.append(last)
            continue
        both = gains(b, b2, seeds)
        if both is None:
            doublings.append({"from": b, "to": b2, "seeds": list(seeds[:1]), "gains": first, "meets": True})
            return _pending(
                doublings,
                missing(b, b2, seeds),
                f"{b} -> {b2} meets the rule on seed {seeds[0]}: confirming on seeds {list(seeds)}",
            )
        last = {
            "from": b,
            "to": b2,
            "seeds": list(seeds),
            "gains": both,
            "meets": all(g < min_gain for g in both.values()),
        }
        doublings.append(last)
        if last["meets"]:
            reason = f"{b} -> {b2} gains under {min_gain} seen mIoU for every arm on the mean of seeds {list(seeds)}"
            return _decided(b, True, doublings, reason)
    if last is None:
        return _pending(doublings, [], "fewer than two rungs")
    gains_text = ", ".join(f"{arm} {g:+.2f}" for arm, g in last["gains"].items())
    reason = f"no doubling up to {budgets[-1]} gains under {min_gain} for every arm (last, {last['from']} -> {last['to']}: {gains_text}): the budget is not converged"
    return _decided(budgets[-1], False, doublings, reason)


def _pending(doublings: list, needs: list, reason: str) -> dict:
    return {
        "budget": None,
        "retrain": None,
        "converged": None,
        "doublings": doublings,
        "needs": needs,
        "reason": reason,
    }


def _decided(budget: int, converged: bool, doublings: list, reason: str) -> dict:
    return {
        "budget": budget,
        "retrain": budget // RETRAIN_SHARE,
        "converged": converged,
        "doublings": doublings,
        "needs": [],
        "reason": reason,
    }


def read_curve(results: Path, profile: str, budgets=BUDGETS, arms=ARMS) -> dict:
    """{arm: {budget: {seed: seen mean}}} from the rungs' stored results (world `WORLD`)."""
    from uniseg.experiments.headline import read_results

    curve: dict = {arm: {} for arm in arms}
    for budget in budgets:
        for record in read_results(results / rung_name(profile, budget)):
            value = seen_mean(record)
            if record["world"] == WORLD and record["arm"] in curve and value is not None:
                curve[record["arm"]].setdefault(budget, {})[record["seed"]] = value
    return curve


PAIRS = {"nullbce_minus_ce_cosine": ("nullbce", "ce-cosine"), "nullbce_minus_ce": ("nullbce", "ce")}


def unseen_differences(results: Path, profile: str, budgets=BUDGETS) -> dict:
    """Once B* is fixed: {pair: {budget: {seed: unseen-mean difference}}} over every rung's scored models —
    how the verdict moves with training."""
    from uniseg.experiments.headline import read_results

    out: dict = {pair: {} for pair in PAIRS}
    for budget in budgets:
        runs: dict = {}
        for record in read_results(results / rung_name(profile, budget)):
            mean = record["metrics"].get("unseen", {}).get("mean")
            if record["world"] == WORLD and mean is not None:
                runs.setdefault(record["seed"], {})[record["arm"]] = mean
        for pair, (a, b) in PAIRS.items():
            found = {s: round(r[a] - r[b], 2) for s, r in sorted(runs.items()) if a in r and b in r}
            if found:
                out[pair][budget] = found
    return out


def write_ladder(
    results: Path, profile: str, curve: dict, decision: dict, made_from: dict | None = None
) -> Path:
    """reports/seeds/<profile>/ladder.json (through uniseg/scores.py): the rule, the curve, the decision
    (and, once B* is fixed, the rungs' unseen paired differences, where they are scored), what it was made
    from (`made_from`: scores.headline_profile of the ladder's params, so a report shows it only beside
    results of the same data) and its figure, ladder.png, beside it."""
    from uniseg.report.figures import plot_ladder
    from uniseg.scores import write_ladder as write

    unseen = unseen_differences(results, profile) if decision.get("budget") is not None else {}
    unseen = {pair: points for pair, points in unseen.items() if points}
    out = results / profile / "ladder.json"
    data = {
        "rule": __doc__.split("\n\n")[1].replace("\n", " "),
        "budgets": list(BUDGETS),
        "arms": list(ARMS),
        "seeds": list(SEEDS),
        "min_gain": MIN_GAIN,
        "curve": {
            arm: {str(b): {str(s): v for s, v in seeds.items()} for b, seeds in points.items()}
            for arm, points in curve.items()
        },
        "decision": decision,
        "profile": made_from or {},
    }
    if unseen:
        data["unseen"] = unseen
    write(out, data)
    plot_ladder(curve, decision, out.with_suffix(".png"), unseen)
    return out
