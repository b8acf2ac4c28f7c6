"""Experiments over the pipeline: the paper's grid (`make paper`) and the seeds headline (`make seeds`).

    python -m uniseg.experiments queue|table      the paper's grid as queued DVC experiments, one table
    python -m uniseg.experiments seeds            CE / Null BCE / C-R BCE (+ control) over seeds


`python -m uniseg.experiments queue` queues, with `dvc exp run --queue`, every setting of the paper's
Tables 1-3 on the real datasets: the five training mixes (C+I+B, I+B+M, C+I+M, C+B+M, C+I+B+M) with
the CE and Null BCE base models (each Null BCE run also retrains the C-R BCE model), leave-one-out
over the four training datasets, and the single-dataset CE models behind the "single-best" row.
`python -m uniseg.experiments table --out reports/paper_tables.md` renders one table from
`dvc exp show --json`. The queued runs use whatever params.yaml holds (use params.paper.yaml).
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import typer

from uniseg.fsio import write_json, write_text
from uniseg.scores import Metrics

ABBREV = {"cityscapes": "C", "idd": "I", "bdd": "B", "mapillary": "M"}
MIXES = [
    ["cityscapes", "idd", "bdd"],
    ["idd", "bdd", "mapillary"],
    ["cityscapes", "idd", "mapillary"],
    ["cityscapes", "bdd", "mapillary"],
    ["cityscapes", "idd", "bdd", "mapillary"],
]
ALL = ["cityscapes", "idd", "bdd", "mapillary"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])


def mix_name(datasets: list[str]) -> str:
    return "".join(ABBREV.get(d, d[:1].upper()) for d in datasets)


def grid() -> list[tuple[str, list[str]]]:
    """(experiment name, `-S` overrides) for every run of the paper's grid."""
    runs = []
    for mix in MIXES:
        for loss in ("ce", "nullbce"):
            runs.append(
                (
                    f"{mix_name(mix)}-{loss}",
                    [f"loss={loss}", f"train.datasets=[{','.join(mix)}]", "evaluate.leave_one_out=false"],
                )
            )
    for left in ALL:
        mix = [d for d in ALL if d != left]
        for loss in ("ce", "nullbce"):
            runs.append(
                (
                    f"loo-{ABBREV[left]}-{loss}",
                    [f"loss={loss}", f"train.datasets=[{','.join(mix)}]", "evaluate.leave_one_out=true"],
                )
            )
    for single in ALL:
        runs.append((f"single-{ABBREV[single]}-ce", ["loss=ce", f"train.datasets=[{single}]"]))
    return runs


# The dvc of this environment (next to its python), so that `make` works without an activated venv.
_DVC = str(Path(sys.executable).with_name("dvc")) if Path(sys.executable).with_name("dvc").exists() else "dvc"


def run_dvc(*args: str) -> str:
    """stdout of `dvc ARGS`; a failure exits with dvc's message."""
    proc = subprocess.run([_DVC, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"error: dvc {' '.join(args)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc.stdout


@app.command()
def queue() -> None:
    """Queue the paper's grid as DVC experiments (start them with `dvc queue start`)."""
    for name, overrides in grid():
        args = ["exp", "run", "--queue", "-n", name]
        for o in overrides:
            args += ["-S", o]
        run_dvc(*args)
        typer.echo(f"queued {name}: {' '.join(overrides)}")


# The DVC metrics files an experiment's numbers come from (keys do not collide between them).
METRICS_FILES = ("reports/metrics.json", "reports/relations.json")


def _metrics_of(rev: dict) -> Metrics:
    files = (rev.get("data") or {}).get("metrics", {})
    merged: dict = {}
    for path in METRICS_FILES:
        merged.update(files.get(path, {}).get("data", {}))
    return Metrics(merged)


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def render_table(shown: list[dict]) -> str:
    """Markdown table (rows = experiment x model, columns = unseen datasets + mean) from exp show JSON."""
    rows = []
    for commit in shown:
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs", []):
                name = rev.get("name")
                if name and any(name == n for n, _ in grid()):
                    rows.append((name, _metrics_of(rev)))
    datasets: list[str] = []
    for _, m in rows:
        datasets += [d for d in m.datasets("unseen") if d not in datasets]
    lines = [
        "# The paper's settings (restricted protocol, mIoU %)",
        "",
        "Rows: DVC experiment (training mix and base loss) and model (base = the loss named, crbce = class-relational "
        "BCE retrained from it). Columns: datasets evaluated as unseen, and their mean. "
        "Leave-one-out rows (`loo-X`) score the left-out training dataset as unseen.",
        "",
        "| experiment | model | " + " | ".join(datasets) + " | mean |",
        "|---|---|" + "---|" * (len(datasets) + 1),
    ]
    for name, m in sorted(rows):
        for model in ("base", "crbce"):
            if model not in m.models:
                continue
            cells = [_cell(m.score(model, "unseen", ds)) for ds in datasets]
            lines.append(
                f"| {name} | {model} | " + " | ".join(cells) + f" | {_cell(m.mean(model, 'unseen'))} |"
            )
    if not rows:
        lines.append("| (no finished experiment of the grid yet: run `make paper`) | | | |")
    return "\n".join(lines) + "\n"


@app.command()
def table(out: Path = typer.Option(Path("reports/paper_tables.md"), "--out")) -> None:
    """Render the grid's results from `dvc exp show --json` into one markdown table."""
    shown = json.loads(run_dvc("exp", "show", "--json", "--no-fetch"))
    write_text(out, render_table(shown))
    typer.echo(f"wrote {out}")


# --- make seeds ----------------------------------------------------------------------------------
# `make seeds`: the headline of the embedded benchmark over several seeds, honestly.
#
# For each seed run the whole pipeline as DVC experiments in temporary directories (`dvc exp run
# --temp -S seed=S ...`; the data stages come from the cache, only training and later stages run), one
# per arm:
#
# - `ce`: CE base model;
# - `nullbce`: Null BCE base model, and the C-R BCE model retrained from it with the mined relations;
# - `nullbce-tau1`: the same Null BCE base (trained again: the train stage's persistent checkpoint
#   keeps it out of DVC's run cache; same seed, same weights) retrained with `relabel.tau=1.0`:
#   no relation passes τ = 1, so the retrain is plain Null BCE fine-tuning for the same iterations — the control that separates the relations' effect from that of more training.
#
# Then collect from `dvc exp show --json`: unseen mean mIoU of each model, the cross-label-space
# conflict classes (rider, road), and the relations mined from each base. Writes
# `reports/headline.json` (mean, std, 95% interval, per seed) and `reports/headline.md`.

# arm -> the `-S` overrides of its experiment.
ARMS = {
    "ce": ("loss=ce",),
    "nullbce": ("loss=nullbce",),
    "nullbce-tau1": ("loss=nullbce", "relabel.tau=1.0"),
}
# headline row -> (arm, model in that arm's metrics, description).
MODELS = {
    "ce": ("ce", "base", "CE base model"),
    "nullbce": ("nullbce", "base", "Null BCE base model"),
    "nullbce+ft": (
        "nullbce-tau1",
        "crbce",
        "Null BCE base + retrain.iters of Null BCE (τ = 1: no relations)",
    ),
    "crbce": ("nullbce", "crbce", "Null BCE base + retrain.iters of C-R BCE (mined relations)"),
}
# Student t quantiles (two-sided 95%) for n-1 degrees of freedom, n = 2..10.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def summarise(values: list[float]) -> dict:
    """mean, sample std and a 95% t-interval of per-seed values (percent)."""
    n = len(values)
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if n > 1 else 0.0
    half = T95.get(n - 1, 1.96) * std / math.sqrt(n) if n > 1 else 0.0
    return {
        "mean": round(mean, 2),
        "std": round(std, 2),
        "ci95": [round(mean - half, 2), round(mean + half, 2)],
        "per_seed": [round(v, 2) for v in values],
    }


def experiment_metrics(name: str) -> Metrics:
    """The metrics of the named experiment (metrics.json and relations.json), from `dvc exp show --json`."""
    # --all-commits: an experiment belongs to the commit it started from, which may not be HEAD now.
    shown = json.loads(run_dvc("exp", "show", "--json", "--no-fetch", "--all-commits"))
    for commit in shown:
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs", []):
                if rev.get("name") == name:
                    return _metrics_of(rev)
    sys.exit(f"error: experiment {name} not found in `dvc exp show`")


def _git_head() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short=7", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()


def collect(runs: dict[tuple[int, str], Metrics], seeds: list[int]) -> dict:
    """headline.json from per-(seed, arm) metrics dictionaries. A row covers the seeds its arm was run
    for (listed under "seeds" when that is not all of them); an arm run for no seed is left out."""
    out: dict = {}
    cross: dict = {}
    for label, (loss, model, _) in MODELS.items():
        ran = [s for s in seeds if (s, loss) in runs]
        if not ran:
            continue
        values = [runs[(s, loss)].value(f"{model}.unseen.mean") for s in ran]
        out[label] = summarise([v for v in values if v is not None])
        if ran != seeds:
            out[label]["seeds"] = ran
        entry = {}
        for key in ("mean", "mapillary_in_cityscapes.iou.rider", "mapillary_in_cityscapes.iou.road"):
            vals = [runs[(s, loss)].value(f"{model}.cross.{key}") for s in ran]
            vals = [v for v in vals if v is not None]
            if vals:
                entry[key] = summarise(vals)
        own = [runs[(s, loss)].value(f"{model}.seen.cityscapes.iou.rider") for s in ran]
        if any(v is not None for v in own):
            entry["cityscapes_in_cityscapes.rider"] = summarise([v for v in own if v is not None])
        cross[label] = entry
    out["cross"] = cross
    # Relation mining from each base model (C-R BCE retrains from the Null BCE base's relations).
    out["relations"] = {}
    for loss in ("ce", "nullbce"):
        if any((s, loss) not in runs for s in seeds):
            continue
        entry = {}
        for key in ("tau", "relations", "precision", "recall"):
            vals = [runs[(s, loss)].value(f"relations.{key}") for s in seeds]
            vals = [v for v in vals if v is not None]
            if vals:
                entry[key] = summarise(vals)
        out["relations"][loss] = entry
    out["seeds"] = seeds
    return out


def render(headline: dict) -> str:
    lines = [
        "# Headline over seeds (embedded synthetic benchmark)",
        "",
        f"Seeds: {', '.join(map(str, headline['seeds']))}. Unseen mean mIoU (%), restricted protocol; "
        "mean ± std and a 95% t-interval over seeds. `nullbce+ft` is the control for `crbce`: the same "
        "base model trained for the same extra iterations without relations.",
        "",
        "| model | what | mean | std | 95% interval | per seed |",
        "|---|---|---|---|---|---|",
    ]
    for label, (_, _, what) in MODELS.items():
        h = headline.get(label)
        if not h or not h.get("per_seed"):
            continue
        if "seeds" in h:
            what += f" (seed {', '.join(map(str, h['seeds']))} only)"
        lines.append(
            f"| {label} | {what} | {h['mean']:.1f} | {h['std']:.1f} | [{h['ci95'][0]:.1f}, {h['ci95'][1]:.1f}] | "
            + ", ".join(f"{v:.1f}" for v in h["per_seed"])
            + " |"
        )
    lines += [
        "",
        "Cross-label-space evaluation (mapillary-style images scored in cityscapes' label space):",
        "",
    ]
    lines += ["| model | metric | mean | std | 95% interval |", "|---|---|---|---|---|"]
    for label in MODELS:
        for key, h in headline["cross"].get(label, {}).items():
            lines.append(
                f"| {label} | {key} | {h['mean']:.1f} | {h['std']:.1f} | [{h['ci95'][0]:.1f}, {h['ci95'][1]:.1f}] |"
            )
    lines += [
        "",
        "Relations mined from each base model against the benchmark's ground truth (`relations.*`):",
        "",
        "| base model | metric | mean | std | per seed |",
        "|---|---|---|---|---|",
    ]
    for loss, entry in headline.get("relations", {}).items():
        for key, h in entry.items():
            lines.append(
                f"| {loss} | {key} | {h['mean']:.3g} | {h['std']:.2g} | "
                + ", ".join(f"{v:.3g}" for v in h["per_seed"])
                + " |"
            )
    if headline.get("commit"):
        lines += ["", f"Experiments run from commit `{headline['commit']}`."]
    return "\n".join(lines) + "\n"


@app.command()
def seeds(
    seed_list: list[int] = typer.Option([0, 1, 2, 3, 4], "--seed", help="Seeds (repeat the option)."),
    out: Path = typer.Option(Path("reports/headline.json"), "--out"),
    rerun: bool = typer.Option(False, "--rerun", help="Rerun experiments that already exist."),
    arms: list[str] = typer.Option(list(ARMS), "--arm", help=f"Arms to run: {', '.join(ARMS)}."),
) -> None:
    """CE, Null BCE, C-R BCE and the control for C-R BCE over seeds -> headline.json and headline.md."""
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise typer.BadParameter(f"unknown arm {unknown[0]!r}; valid: {', '.join(ARMS)}", param_hint="--arm")
    # Experiments are named after the commit they run from, so results of older code are never reused.
    commit = _git_head()
    runs = {}
    for seed in seed_list:
        for arm in arms:
            name = f"seed{seed}-{arm}-{commit}"
            start = time.monotonic()
            print(f"[seeds] running {name} ...", flush=True)
            done = name in run_dvc("exp", "list", "--all-commits", "--name-only").split()
            if done and not rerun:
                print(f"[seeds] {name} exists (pass --rerun to run it again)", flush=True)
            else:
                if done:
                    run_dvc("exp", "remove", name)
                overrides = [x for kv in (f"seed={seed}", *ARMS[arm]) for x in ("-S", kv)]
                run_dvc("exp", "run", "--temp", "-n", name, *overrides)
            runs[(seed, arm)] = experiment_metrics(name)
            print(f"[seeds] {name} done in {time.monotonic() - start:.0f} s", flush=True)
    # Arms not asked for this time are still reported for the seeds they were run for earlier.
    existing = set(run_dvc("exp", "list", "--all-commits", "--name-only").split())
    for seed in seed_list:
        for arm in ARMS:
            if arm not in arms and f"seed{seed}-{arm}-{commit}" in existing:
                runs[(seed, arm)] = experiment_metrics(f"seed{seed}-{arm}-{commit}")
    headline = collect(runs, seed_list)
    headline["commit"] = commit
    write_json(out, headline)
    write_text(out.with_suffix(".md"), render(headline))
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    app()
