"""Stage train: the base model (loss = ce | bce | nullbce) on the union of train.datasets.

With train.devices > 1 the stage re-launches itself under torchrun (one process per GPU)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from uniseg.errors import exit_on_user_error
from uniseg.params import load_params
from uniseg.train.distributed import relaunch_with_torchrun
from uniseg.train.engine import TrainJob, run_summary, train_model

app = typer.Typer(add_completion=False)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="Parameters file."),
    shards: Path = typer.Option(Path("data/shards"), help="Shard root."),
    out: Path = typer.Option(Path("models/base.pt"), help="Model file to write."),
    log_dir: Path = typer.Option(None, help="Training curves (default reports/train/<out stem>)."),
) -> None:
    with exit_on_user_error():
        p = load_params(params)
        relaunch_with_torchrun(p.train.devices, "stages.train", sys.argv[1:])
        result = train_model(TrainJob.from_params(p, shards, out, log_dir=log_dir))
    typer.echo(f"train {p.loss} ({result['precision']}): {run_summary(result)} -> {out}")


if __name__ == "__main__":
    app()
