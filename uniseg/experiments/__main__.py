"""`python -m uniseg.experiments queue|table|seeds|headline`: the one experiment driver.

queue      the paper's grid on real data as queued DVC experiments (`make paper`)
table      the grid's results as one table (reports/paper_tables.md)
seeds      the headline's arms per (world, seed), stored in reports/seeds/ (`make seeds`)
headline   reports/headline.json and .md from the stored, current results
"""

from __future__ import annotations

from pathlib import Path

import typer

from uniseg.errors import exit_on_user_error

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])
RESULTS, WORK = Path("reports/seeds"), Path(".seeds")


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
        None, "--arm", help="Arms (repeat): ce, ce-cosine, nullbce, crbce, control, oracle, crbce-paper."
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
    from uniseg.experiments.seeds import Runner

    with exit_on_user_error():
        arms = arms or list(DEFAULT_ARMS)
        unknown = [a for a in arms if a not in ARMS]
        if unknown:
            raise typer.BadParameter(
                f"unknown arm {unknown[0]!r}; valid: {', '.join(ARMS)}", param_hint="--arm"
            )
        threads = None if jobs == 1 else max(1, (os.cpu_count() or 1) // jobs)
        runner = Runner(params, WORK, RESULTS, typer.echo, threads=threads)
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
def headline(
    out: Path = typer.Option(Path("reports/headline.json"), "--out"),
    params: Path = typer.Option(Path("params.yaml"), help="The profile of the results to keep current."),
) -> None:
    """reports/headline.json and .md from the stored results whose fingerprints are current (stale ones are
    listed and left out)."""
    from uniseg.experiments.headline import write_headline
    from uniseg.experiments.seeds import Runner
    from uniseg.params import load_params
    from uniseg.scores import headline_profile

    with exit_on_user_error():
        runner = Runner(params, WORK, RESULTS, typer.echo)
        stale = []

        def current(record: dict) -> bool:
            ok = runner.status(record["world"], record["seed"], record["arm"]) == "done"
            if not ok:
                stale.append(f"world {record['world']} seed {record['seed']} {record['arm']}")
            return ok

        h = write_headline(RESULTS, out, keep=current, profile=headline_profile(load_params(params)))
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
