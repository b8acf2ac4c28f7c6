"""The paper's experiment grid as DVC experiments (`make paper`), and its comparison table.

`python -m uniseg.experiments queue` queues, with `dvc exp run --queue`, every setting of the paper's
Tables 1-3 on the real datasets: the five training mixes (C+I+B, I+B+M, C+I+M, C+B+M, C+I+B+M) with
the CE and Null BCE base models (each Null BCE run also retrains the C-R BCE model), leave-one-out
over the four training datasets, and the single-dataset CE models behind the "single-best" row.
`python -m uniseg.experiments table --out reports/paper_tables.md` renders one table from
`dvc exp show --json`. The queued runs use whatever params.yaml holds (use params.paper.yaml).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import typer

from uniseg.fsio import write_text

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


def _metrics_of(rev: dict) -> dict:
    files = (rev.get("data") or {}).get("metrics", {})
    return files.get("reports/metrics.json", {}).get("data", {})


def _cell(metrics: dict, *path: str) -> str:
    d = metrics
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return "–"
        d = d[p]
    return f"{d:.1f}" if isinstance(d, int | float) else "–"


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
        for model in m.values():
            for ds in model.get("unseen") or {}:
                if ds not in datasets and ds not in ("mean", "mean_merged"):
                    datasets.append(ds)
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
            if model not in m:
                continue
            cells = [_cell(m, model, "unseen", ds, "miou") for ds in datasets]
            lines.append(
                f"| {name} | {model} | " + " | ".join(cells) + f" | {_cell(m, model, 'unseen', 'mean')} |"
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


if __name__ == "__main__":
    app()
