"""The paper's experiment grid on the real datasets as queued DVC experiments (`make paper`), and one
table of its results from `dvc exp show --json`.

The grid: every setting of the paper's Tables 1-3 — the five training mixes (C+I+B, I+B+M, C+I+M, C+B+M,
C+I+B+M) with the CE and Null BCE base models (each Null BCE run also retrains the C-R BCE model),
leave-one-out over the four training datasets, and the single-dataset CE models behind the
"single-best" row. The queued runs use whatever params.yaml holds (use params.paper.yaml).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from uniseg.report.tables import markdown_table
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


def queue_grid(echo=print) -> None:
    """Queue the paper's grid as DVC experiments (start them with `dvc queue start`)."""
    for name, overrides in grid():
        args = ["exp", "run", "--queue", "-n", name]
        for o in overrides:
            args += ["-S", o]
        run_dvc(*args)
        echo(f"queued {name}: {' '.join(overrides)}")


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
    table = [
        [
            name,
            model,
            *(_cell(m.score(model, "unseen", ds)) for ds in datasets),
            _cell(m.mean(model, "unseen")),
        ]
        for name, m in sorted(rows)
        for model in ("base", "crbce")
        if model in m.models
    ]
    if not rows:
        table = [["(no finished experiment of the grid yet: run `make paper`)", "", ""]]
    lines = [
        "# The paper's settings (restricted protocol, mIoU %)",
        "",
        "Rows: DVC experiment (training mix and base loss) and model (base = the loss named, crbce = class-relational "
        "BCE retrained from it). Columns: datasets evaluated as unseen, and their mean. "
        "Leave-one-out rows (`loo-X`) score the left-out training dataset as unseen.",
        "",
        *markdown_table(["experiment", "model", *datasets, "mean"], table),
    ]
    return "\n".join(lines) + "\n"


def paper_table() -> str:
    """The grid's results, from `dvc exp show --json`, as markdown."""
    return render_table(json.loads(run_dvc("exp", "show", "--json", "--no-fetch")))
