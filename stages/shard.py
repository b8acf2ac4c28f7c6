"""Stage shard@<dataset>: resize (shorter side = shard.short_side) and pack into Arrow shards: a
synthetic dataset from its rendered folder, a real one from its index (files read in place, labels
converted; a test set keeps its labels at their original resolution)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from uniseg.errors import exit_on_user_error
from uniseg.params import load_params
from uniseg.shards.packing import write_shards

app = typer.Typer(add_completion=False)


@app.command()
def main(
    dataset: str = typer.Argument(..., help="Dataset name."),
    params: Path = typer.Option(Path("params.yaml"), help="Parameters file."),
    raw: Path = typer.Option(None, help="The download stage's folder (default data/raw/<dataset>)."),
    out: Path = typer.Option(None, help="Output folder (default data/shards/<dataset>)."),
) -> None:
    start = time.perf_counter()
    with exit_on_user_error():
        p = load_params(params)
        raw = raw or Path("data/raw") / dataset
        out = out or Path("data/shards") / dataset
        result = write_shards(
            raw,
            out,
            p.shard.short_side,
            p.shard.images_per_shard,
            p.shard.workers,
            p.data.skip_corrupt,
            image_format=p.shard.image_format,
        )
    for why in result["skipped"]:
        typer.echo(f"  skipped: {why}", err=True)
    typer.echo(
        f"shard {dataset}: {result['images']} images in {result['shards']} shards, "
        f"{len(result['skipped'])} skipped -> {out} in {time.perf_counter() - start:.1f}s"
    )


if __name__ == "__main__":
    app()
