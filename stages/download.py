"""Stage download@<dataset>: data/raw/<dataset>, what the shard stage packs.

Synthetic source: render the dataset from its policy (canonical layout). Real source: find the user's
folder or archive under data.root (or download it where the dataset is public), check that its files
pair up, and write their index (dataset.json + index.parquet): the images are not copied."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from uniseg.errors import exit_on_user_error
from uniseg.params import load_params

app = typer.Typer(add_completion=False)


@app.command()
def main(
    dataset: str = typer.Argument(..., help="Dataset name."),
    params: Path = typer.Option(Path("params.yaml"), help="Parameters file."),
    out: Path = typer.Option(None, help="Output folder (default data/raw/<dataset>)."),
    preview: Path = typer.Option(None, help="Preview PNG (default reports/figures/datasets/<dataset>.png)."),
) -> None:
    start = time.perf_counter()
    with exit_on_user_error():
        p = load_params(params)
        out = out or Path("data/raw") / dataset
        preview = preview or Path("reports/figures/datasets") / f"{dataset}.png"
        if p.data.source == "synthetic":
            from uniseg.datasets.preview import preview_layout
            from uniseg.datasets.synthetic import generate_dataset

            meta = generate_dataset(dataset, out, p.synthetic)
            summary = f"{sum(meta.splits.values())} synthetic images ({meta.splits})"
            preview_layout(out, preview)
        else:
            from uniseg.datasets.download import prepare, preview_index

            result = prepare(dataset, Path(p.data.root), out)
            summary = f"{result['images']} images ({result['splits']}) indexed in {result['root']}"
            preview_index(out, preview)
    typer.echo(
        f"download {dataset}: {summary} -> {out} (preview {preview}) in {time.perf_counter() - start:.1f}s"
    )


if __name__ == "__main__":
    app()
