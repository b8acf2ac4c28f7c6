"""Stage download@<dataset>: the dataset in the canonical layout under data/raw/<dataset>.

Synthetic source: render it from its policy. Real source: find the user's archive/folder under
data.root (or download it where the dataset is public), verify it and convert its labels."""

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
    from uniseg.datasets.preview import preview_layout

    start = time.perf_counter()
    with exit_on_user_error():
        p = load_params(params)
        out = out or Path("data/raw") / dataset
        if p.data.source == "synthetic":
            from uniseg.datasets.synthetic import generate_dataset

            meta = generate_dataset(dataset, out, p.synthetic)
            summary = f"{sum(meta.splits.values())} synthetic images ({meta.splits})"
        else:
            from uniseg.datasets.download import prepare

            result = prepare(dataset, Path(p.data.root), out, p.data.skip_corrupt)
            summary = f"{result['images']} images, {len(result['skipped'])} skipped"
            for path, why in result["skipped"]:
                typer.echo(f"  skipped {path}: {why}", err=True)
        preview = preview or Path("reports/figures/datasets") / f"{dataset}.png"
        preview_layout(out, preview)
    typer.echo(
        f"download {dataset}: {summary} -> {out} (preview {preview}) in {time.perf_counter() - start:.1f}s"
    )


if __name__ == "__main__":
    app()
