"""`python -m uniseg.experiments <command>`: the one experiment driver.

queue      the paper's grid on real data as queued DVC experiments (`make paper`)
table      the grid's results as one table (reports/paper_tables.md)
seeds      the headline's arms per (world, seed), stored in reports/seeds/<profile>/ (`make seeds`)
ladder     the converged verdict's budget, decided on the seen val splits (`make ladder`)
converged  the converged profile from the ladder's decision, its kept models adopted (`make converged`)
extend     seeds 3-4 of the arms whose pair's 95 % interval straddles its target (the converged verdict)
headline   the profile's headline.json and .md from its stored, current results
restamp    carry a profile's stored results over a change proven to compute the same numbers
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from uniseg.errors import UserError, exit_on_user_error
from uniseg.params import load_params

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])
RESULTS, WORK = Path("reports/seeds"), Path(".seeds")
DEFAULT_HEADLINE = Path("reports/headline.json")  # the default profile's: results.md embeds it
CONVERGED_PARAMS = Path("params.converged.yaml")  # written by `converged` once the ladder fixed B*


def profile_name(params: Path) -> str:
    """A profile is a params file of the repository: params.yaml is "default", params.<name>.yaml is
    <name>. Its results and work folders are its own (reports/seeds/<name>/, .seeds/<name>/), so
    profiles never overwrite each other's results."""
    if params.name == "params.yaml":
        return "default"
    parts = params.name.split(".")
    if len(parts) == 3 and parts[0] == "params" and parts[2] == "yaml" and parts[1]:
        return parts[1]
    raise typer.BadParameter(
        f"{params}: a profile is params.yaml or params.<name>.yaml", param_hint="--params"
    )


def _runner(params: Path, echo=typer.echo, threads: int | None = None):
    from uniseg.experiments.seeds import Runner

    name = profile_name(params)
    return Runner(params, WORK / name, RESULTS / name, echo, threads=threads)


def _rung_runner(params: Path, budget: int, unseen: bool = False, threads: int | None = None):
    """The runner of one rung of the ladder whose profile is `params` (experiments/ladder.py)."""
    from uniseg.experiments import ladder as lad
    from uniseg.experiments.seeds import Runner

    where = lad.rung_name(profile_name(params), budget)
    rung_params = lad.write_rung_params(params, budget, WORK / where / "params.yaml", unseen)
    return Runner(rung_params, WORK / where, RESULTS / where, typer.echo, threads=threads)


def headline_path(params: Path) -> Path:
    """reports/headline.json for the default profile; reports/seeds/<name>/headline.json for the others."""
    name = profile_name(params)
    return DEFAULT_HEADLINE if name == "default" else RESULTS / name / "headline.json"


@app.command()
def queue() -> None:
    """Queue the paper's grid as DVC experiments (start them with `dvc queue start`)."""
    from uniseg.experiments.grid import queue_grid

    queue_grid(typer.echo)


@app.command()
def table(out: Path = typer.Option(Path("reports/paper_tables.md"), "--out")) -> None:
    """Render the grid's results from `dvc exp show --json` into one markdown table."""
    from uniseg.experiments.grid import paper_table
    from uniseg.fsio import write_text

    write_text(out, paper_table())
    typer.echo(f"wrote {out}")


@app.command()
def seeds(
    world: int = typer.Option(0, "--world", help="The synthetic world (synthetic.seed)."),
    seed_list: list[int] = typer.Option(
        [0, 1, 2, 3, 4], "--seed", help="Training seeds (repeat the option)."
    ),
    arms: list[str] = typer.Option(
        None,
        "--arm",
        help="Arms (repeat): ce, ce-cosine, nullbce, crbce, control, oracle, oracle-out, crbce-paper.",
    ),
    params: Path = typer.Option(Path("params.yaml"), help="The profile the arms start from."),
    jobs: int = typer.Option(
        1, "--jobs", min=1, help="Arms run at once (each stage gets cores / jobs threads)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only say what is done, stale or missing."),
) -> None:
    """Run what is missing or stale of the arms x seeds of one world; keep what is current."""
    import os

    from uniseg.experiments.arms import ARMS, DEFAULT_ARMS

    with exit_on_user_error():
        arms = arms or list(DEFAULT_ARMS)
        unknown = [a for a in arms if a not in ARMS]
        if unknown:
            raise typer.BadParameter(
                f"unknown arm {unknown[0]!r}; valid: {', '.join(ARMS)}", param_hint="--arm"
            )
        threads = None if jobs == 1 else max(1, (os.cpu_count() or 1) // jobs)
        runner = _runner(params, threads=threads)
        plan = [(world, seed, arm) for seed in seed_list for arm in arms]
        if not dry_run:
            typer.echo(f"[seeds] world {world}: {len(plan)} runs, {jobs} at a time")
        for (w, seed, arm), done, seconds in runner.run_all(plan, jobs, dry_run):
            typer.echo(
                f"world {w} seed {seed} {arm}: {done}"
                if dry_run
                else f"[seeds] world {w} seed {seed} {arm}: {done} in {seconds:.0f} s"
            )


@app.command()
def ladder(
    params: Path = typer.Option(Path("params.ladder.yaml"), help="The ladder's profile."),
    unseen: bool = typer.Option(
        False, "--unseen", help="Once B* is fixed: score every rung's kept models on the unseen sets too."
    ),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Arms run at once."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Only say where the rule stands and what it waits for."
    ),
) -> None:
    """The budget ladder (experiments/ladder.py): run what the rule waits for, rung by rung, until it fixes
    B*; resumable (a rung's current results are kept). Writes reports/seeds/<profile>/ladder.json + .png."""
    import os

    from uniseg.experiments import ladder as lad
    from uniseg.experiments.seeds import Runner
    from uniseg.scores import headline_profile

    with exit_on_user_error():
        name = profile_name(params)
        made_from = headline_profile(load_params(params))  # a bad profile fails here, before anything runs
        threads = None if jobs == 1 else max(1, (os.cpu_count() or 1) // jobs)

        def rung(budget: int, score_unseen: bool = False) -> Runner:
            return _rung_runner(params, budget, score_unseen, threads)

        while True:
            curve = lad.read_curve(RESULTS, name)
            decision = lad.decide(curve)
            out = lad.write_ladder(RESULTS, name, curve, decision, made_from)
            typer.echo(f"[ladder] {decision['reason']} -> {out}")
            if decision["budget"] is not None or not decision["needs"] or dry_run:
                break
            for budget, seed in decision["needs"]:
                plan = [(lad.WORLD, seed, arm) for arm in lad.ARMS]
                for (_, s, arm), done, seconds in rung(budget).run_all(plan, jobs):
                    typer.echo(f"[ladder] {budget} iterations, seed {s} {arm}: {done} in {seconds:.0f} s")
        if unseen and not dry_run:
            if decision["budget"] is None:
                raise typer.BadParameter(
                    "--unseen waits for the rule to fix B* (the unseen sets stay untouched until then)"
                )
            for budget in lad.BUDGETS:
                seeds = sorted({s for points in curve.values() for s in points.get(budget, {})})
                plan = [(lad.WORLD, s, arm) for s in seeds for arm in lad.ARMS]
                for (_, s, arm), done, seconds in rung(budget, score_unseen=True).run_all(plan, jobs):
                    typer.echo(
                        f"[ladder] unseen: {budget} iterations, seed {s} {arm}: {done} in {seconds:.0f} s"
                    )
            out = lad.write_ladder(RESULTS, name, curve, decision, made_from)
            typer.echo(f"[ladder] unseen scored -> {out}")


@app.command()
def converged(
    params: Path = typer.Option(Path("params.ladder.yaml"), help="The ladder's profile."),
    out: Path = typer.Option(CONVERGED_PARAMS, help="The converged profile to write."),
) -> None:
    """Once the ladder has fixed B*: write the converged profile (the ladder's at B* and R*, scoring the
    unseen sets) and adopt the rung B*'s kept models, so its seeds 0-1 are scored, not retrained."""
    from uniseg.experiments import ladder as lad

    with exit_on_user_error():
        name = profile_name(params)
        decision = lad.decide(lad.read_curve(RESULTS, name))
        written = lad.write_converged(params, decision, out, name)
        rung = _rung_runner(params, decision["budget"])
        copied = lad.adopt_models(rung, _runner(out))
    typer.echo(f"[converged] B* = {decision['budget']}, R* = {decision['retrain']}: {decision['reason']}")
    typer.echo(f"[converged] {written}; {len(copied)} kept files of {rung.work} and {rung.results} adopted")


@app.command()
def restamp(
    since: str = typer.Option(..., "--since", help="The commit whose code computed the stored results."),
    params: Path = typer.Option(Path("params.yaml"), help="The profile whose results to carry over."),
    write: bool = typer.Option(False, "--write", help="Rewrite the fingerprints (default: only list)."),
) -> None:
    """After a code change shown to compute the same numbers (say how in its commit: the same models and
    metrics from both codes), carry the profile's stored results over to the current code: a result whose
    fingerprints are what the code at --since gives gets the current code's (its kept model's stamp too);
    one that was stale already is left alone. Never for a change that moves a number: rerun instead."""
    import subprocess
    import tempfile

    from uniseg.experiments.ladder import BUDGETS, rung_name

    with exit_on_user_error():
        found = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"{since}^{{commit}}"], capture_output=True
        )
        if found.returncode != 0:
            raise UserError(
                f"--since {since}: not a commit of this repository (`git log --oneline` lists them)"
            )
        name = profile_name(params)  # and, for a ladder's profile, its rungs'
        rungs = [b for b in BUDGETS if (RESULTS / rung_name(name, b)).is_dir()]
        # A rung's results were scored either on the seen splits only or, once B* was fixed, on the unseen
        # sets too (`ladder --unseen`): each is carried over under the rung params it was computed with.
        # Runners are made one after the other (a rung's two share its params file): (make one, which
        # results it carries over: None for all, else those scored on the unseen sets or those not).
        runners = [(lambda: _runner(params), None)]
        for budget in rungs:
            for unseen in (False, True):
                runners.append((lambda b=budget, u=unseen: _rung_runner(params, b, u), unseen))
        with tempfile.TemporaryDirectory() as tmp:
            before = Path(tmp) / "before"
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(before), since], check=True, capture_output=True
            )
            try:
                for make_runner, unseen in runners:
                    runner = make_runner()
                    for path in sorted(runner.results.glob("world*/seed*.json")):
                        r = json.loads(path.read_text(encoding="utf-8"))
                        if unseen is not None and ("unseen" in r["metrics"]) != unseen:
                            continue
                        done = runner.restamp(r["world"], r["seed"], r["arm"], before, write)
                        more = "" if write or done != "restamped" else " (with --write)"
                        typer.echo(f"{path}: {done}{more}")
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(before)], check=True)


@app.command()
def extend(
    params: Path = typer.Option(CONVERGED_PARAMS, help="The profile to extend."),
    world: int = typer.Option(0, "--world", help="The synthetic world."),
    seed_list: list[int] = typer.Option([3, 4], "--seed", help="The seeds to add (repeat the option)."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Arms run at once."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only say which pairs straddle their target."),
) -> None:
    """More seeds where the verdict is open: the arms of every pair whose 95 % interval on the profile's
    current results straddles its target (experiments/targets.py `undecided`) get seeds 3 and 4; then the
    headline is rewritten."""
    from uniseg.experiments.headline import PAIRS, collect, read_results
    from uniseg.experiments.targets import undecided

    with exit_on_user_error():
        if params.name == CONVERGED_PARAMS.name and not params.is_file():
            raise UserError(
                f"{params}: not written yet; `python -m uniseg.experiments converged` writes it once the "
                "ladder has fixed B* (`python -m uniseg.experiments ladder --dry-run` says where it stands)"
            )
        load_params(params)
        runner = _runner(params)
        current = [r for r in read_results(runner.results) if _is_current(runner, r)]
        pairs = undecided(collect(current), world)
        arms = list(dict.fromkeys(arm for pair in pairs for arm in PAIRS[pair]))
        if not any(r["world"] == world for r in current):
            raise UserError(
                f"no current results of world {world} in {runner.results} to extend (`make seeds` first)"
            )
        said = f"{', '.join(pairs)} straddle their targets -> seeds {seed_list} of {', '.join(arms)}"
        typer.echo(f"[extend] world {world}: {said if pairs else 'no interval straddles its target'}")
        if dry_run or not arms:
            return
        plan = [(world, seed, arm) for seed in seed_list for arm in arms]
        for (w, seed, arm), done, seconds in runner.run_all(plan, jobs):
            typer.echo(f"[extend] world {w} seed {seed} {arm}: {done} in {seconds:.0f} s")
    headline(out=None, params=params)


def _is_current(runner, record: dict) -> bool:
    return runner.status(record["world"], record["seed"], record["arm"]) == "done"


@app.command()
def headline(
    out: Path = typer.Option(None, "--out", help="Default: the profile's (`headline_path`)."),
    params: Path = typer.Option(Path("params.yaml"), help="The profile of the results to keep current."),
) -> None:
    """The profile's headline.json and .md from its stored results whose fingerprints are current (stale
    ones are listed and left out)."""
    from uniseg.experiments.headline import write_headline
    from uniseg.scores import headline_profile

    with exit_on_user_error():
        runner, out = _runner(params), out or headline_path(params)
        stale = []

        def current(record: dict) -> bool:
            ok = _is_current(runner, record)
            if not ok:
                stale.append(f"world {record['world']} seed {record['seed']} {record['arm']}")
            return ok

        h = write_headline(runner.results, out, keep=current, profile=headline_profile(load_params(params)))
    for line in stale:
        typer.echo(f"  stale (left out; `make seeds` recomputes it): {line}", err=True)
    paired = ", ".join(
        f"{k} {v['mean']:+.2f} "
        + (f"[{v['ci95'][0]:+.2f}, {v['ci95'][1]:+.2f}]" if v["ci95"] else "(one seed)")
        for k, v in h["paired"].items()
    )
    typer.echo(f"wrote {out} and {out.with_suffix('.md')}: {paired or 'no paired results yet'}")


if __name__ == "__main__":
    app()
