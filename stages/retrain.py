"""Stage retrain: class-relational BCE (eq. 8) with the multi-labels of the relabel stage.

retrain.init = base fine-tunes the base model; imagenet starts from the backbone's initialisation
(model.pretrained)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import typer

from uniseg.datasets.layout import read_spaces
from uniseg.engine import TrainJob, relaunch_with_torchrun, train_model
from uniseg.errors import DataError, exit_on_user_error
from uniseg.params import load_params
from uniseg.taxonomy import union

app = typer.Typer(add_completion=False)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="Parameters file."),
    shards: Path = typer.Option(Path("data/shards"), help="Shard root."),
    base: Path = typer.Option(Path("models/base.pt"), help="Base model file."),
    multilabels: Path = typer.Option(Path("data/relations/multilabels.parquet"), help="Relabel output."),
    out: Path = typer.Option(Path("models/crbce.pt"), help="Model file to write."),
) -> None:
    with exit_on_user_error():
        p = load_params(params)
        relaunch_with_torchrun(p.train.devices, "stages.retrain", sys.argv[1:])
        spaces = read_spaces(shards, p.train.datasets)
        if not multilabels.is_file():
            raise DataError(f"{multilabels}: not found; run the relabel stage first (dvc repro)")
        table = pd.read_parquet(multilabels)
        relations = list(table[["dataset", "primary", "secondary"]].itertuples(index=False, name=None))
        job = TrainJob(
            loss="crbce",
            model=p.model,
            train=p.train,
            seed=p.seed,
            iters=p.retrain.iters,
            lr=p.retrain.lr,
            optimizer=p.retrain.optimizer,
            spaces=spaces,
            union=union(spaces.values()),
            shard_dirs=[shards / d for d in p.train.datasets],
            model_path=out,
            checkpoint_path=out.with_suffix(".ckpt"),
            log_dir=Path("reports/train") / out.stem,
            relations=relations,
            init_model=base if p.retrain.init == "base" else None,
        )
        result = train_model(job)
    typer.echo(
        f"retrain crbce ({len(relations)} relations, init {p.retrain.init}): {result['iterations']} iterations "
        f"in {result['seconds']:.0f}s, final loss {result['final_loss']:.4f} -> {out}"
    )


if __name__ == "__main__":
    app()
