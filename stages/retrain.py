"""Stage retrain: class-relational BCE (eq. 8) with the multi-labels of the relabel stage.

retrain.init = base fine-tunes the base model; imagenet starts from the backbone's initialisation
(model.pretrained). The schedule is the train section's with retrain's iters, lr and optimizer."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from uniseg.errors import exit_on_user_error
from uniseg.params import load_params
from uniseg.relations.mining import read_multilabels, relation_triples
from uniseg.train.distributed import relaunch_with_torchrun
from uniseg.train.engine import TrainJob, run_summary, train_model

app = typer.Typer(add_completion=False)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="Parameters file."),
    shards: Path = typer.Option(Path("data/shards"), help="Shard root."),
    base: Path = typer.Option(Path("models/base.pt"), help="Base model file."),
    multilabels: Path = typer.Option(Path("data/relations/multilabels.parquet"), help="Relabel output."),
    out: Path = typer.Option(Path("models/crbce.pt"), help="Model file to write."),
    log_dir: Path = typer.Option(None, help="Training curves (default reports/train/<out stem>)."),
) -> None:
    with exit_on_user_error():
        p = load_params(params)
        relaunch_with_torchrun(p.train.devices, "stages.retrain", sys.argv[1:])
        relations = relation_triples(read_multilabels(multilabels))
        schedule = {"iters": p.retrain.iters, "lr": p.retrain.lr, "optimizer": p.retrain.optimizer}
        job = TrainJob.from_params(
            p,
            shards,
            out,
            loss="crbce",
            train=p.train.model_copy(update=schedule),
            relations=relations,
            init_model=base if p.retrain.init == "base" else None,
            log_dir=log_dir,
            stage="retrain",
        )
        result = train_model(job)
    typer.echo(
        f"retrain crbce ({len(relations)} relations, init {p.retrain.init}, {result['precision']}): "
        f"{run_summary(result)} -> {out}"
    )


if __name__ == "__main__":
    app()
