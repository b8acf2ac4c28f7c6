"""Stage report: reports/results.md (tables per group and protocol, the paper's numbers for
orientation) and reports/figures/results/ (bars, the cross-label-space matrix, example predictions)."""

from __future__ import annotations

from pathlib import Path

import typer

from uniseg.errors import exit_on_user_error
from uniseg.evaluation import example_panels
from uniseg.fsio import atomic_dir, write_text
from uniseg.models import load_model_file
from uniseg.params import load_params
from uniseg.report.figures import plot_cross, plot_group_bars, plot_panels
from uniseg.report.results import results_markdown
from uniseg.scores import Metrics, read_relation_metrics

app = typer.Typer(add_completion=False)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="Parameters file."),
    shards: Path = typer.Option(Path("data/shards"), help="Shard root."),
    metrics_path: Path = typer.Option(Path("reports/metrics.json"), "--metrics", help="Evaluate output."),
    relations_path: Path = typer.Option(
        Path("reports/relations.json"), "--relations", help="Relabel output."
    ),
    headline_path: Path = typer.Option(
        Path("reports/headline.md"), "--headline", help="`make seeds` output, embedded when present."
    ),
    models_dir: Path = typer.Option(Path("models"), help="Where base.pt and crbce.pt are."),
    out: Path = typer.Option(Path("reports/results.md"), help="Report to write."),
    figures: Path = typer.Option(Path("reports/figures/results"), help="Figure folder to write."),
    device: str = typer.Option("cpu", help="cpu or cuda (for the example panels)."),
) -> None:
    with exit_on_user_error():
        p = load_params(params)
        metrics = Metrics.read(metrics_path)
        models = {m: load_model_file(models_dir / f"{m}.pt", device) for m in metrics.models}
        losses = {m: info.loss for m, (_, info) in models.items()}
        made = []
        with atomic_dir(figures) as tmp:
            for group in ("unseen", "seen"):
                if plot_group_bars(metrics, losses, group, tmp / f"{group}.png"):
                    made.append(f"{group}.png")
            if plot_cross(metrics, losses, p.train.datasets, tmp / "cross.png"):
                made.append("cross.png")
            for name, datasets, n in (
                ("examples_unseen.png", p.evaluate.unseen, p.report.figure_images),
                ("examples_seen.png", p.train.datasets, min(p.report.figure_images, 1)),
            ):
                if n and plot_panels(
                    example_panels(models, datasets, shards, n, p.evaluate.height, device), tmp / name
                ):
                    made.append(name)
        base = figures.relative_to(out.parent) if figures.is_relative_to(out.parent) else figures
        rel = [str(base / f) for f in made]
        if (out.parent / "figures" / "similarity.png").is_file():
            rel.append("figures/similarity.png")
        headline = headline_path.read_text(encoding="utf-8") if headline_path.is_file() else None
        relations = read_relation_metrics(relations_path)
        text = results_markdown(
            metrics, losses, p.train.datasets, relations, rel, p.evaluate.protocol, headline
        )
        write_text(out, text)
    typer.echo(f"report: {out} with {len(made)} figures in {figures}/")


if __name__ == "__main__":
    app()
