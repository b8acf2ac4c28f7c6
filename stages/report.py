"""Stage report: reports/results.md (tables per group and protocol, the paper's numbers for
orientation) and reports/figures/results/ (bars, the cross-label-space matrix, example predictions,
a look at every dataset)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from uniseg.data import EvalSet
from uniseg.errors import DataError, exit_on_user_error
from uniseg.evaluation import make_target, model_probs, predict_labels, upsample
from uniseg.fsio import atomic_dir, write_text
from uniseg.params import load_params
from uniseg.report import plot_cross, plot_group_bars, plot_panels, results_markdown

app = typer.Typer(add_completion=False)


def _example_rows(models, datasets, shards, n, height, device):
    """Panels for the first n val images of each dataset: image, ground truth, each model's prediction."""
    import torch

    rows = []
    for name in datasets:
        data = EvalSet(shards / name, "val", height, limit=n)
        for i in range(len(data)):
            image, label, _, key = data[i]
            raw = data.reader.read(data.rows[i]).image
            panels = [("ground truth", label.numpy(), data.classes)]
            for model_name, (model, info) in models.items():
                target = make_target(data.classes, info.classes, data.reader.meta.fallbacks)
                with torch.inference_mode():
                    probs = upsample(model_probs(model, image[None].to(device), info), tuple(label.shape))
                    pred = predict_labels(probs, target, "restricted")[0].cpu()
                evaluated = target.resolution.evaluated
                as_space = torch.tensor(evaluated, dtype=torch.uint8)[pred]
                panels.append((f"{model_name} ({info.loss})", as_space.numpy(), data.classes))
            rows.append({"title": f"{name}: {key}", "image": raw, "panels": panels})
    return rows


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
    from uniseg.models import load_model_file

    with exit_on_user_error():
        p = load_params(params)
        if not metrics_path.is_file():
            raise DataError(f"{metrics_path}: not found; run the evaluate stage first (dvc repro)")
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        relations = (
            json.loads(relations_path.read_text(encoding="utf-8")) if relations_path.is_file() else None
        )
        models = {m: load_model_file(models_dir / f"{m}.pt", device) for m in metrics}
        losses = {m: info.loss for m, (_, info) in models.items()}
        made = []
        with atomic_dir(figures) as tmp:
            for group in ("unseen", "seen"):
                if plot_group_bars(metrics, losses, group, tmp / f"{group}.png"):
                    made.append(f"{group}.png")
            if plot_cross(metrics, losses, p.train.datasets, tmp / "cross.png"):
                made.append("cross.png")
            n = p.report.figure_images
            if n:
                rows = _example_rows(models, p.evaluate.unseen, shards, n, p.evaluate.height, device)
                if plot_panels(rows, tmp / "examples_unseen.png"):
                    made.append("examples_unseen.png")
                rows = _example_rows(models, p.train.datasets, shards, 1, p.evaluate.height, device)
                if plot_panels(rows, tmp / "examples_seen.png"):
                    made.append("examples_seen.png")
        rel = [
            str(Path(figures.relative_to(out.parent) if figures.is_relative_to(out.parent) else figures) / f)
            for f in made
        ]
        if (out.parent / "figures" / "similarity.png").is_file():
            rel.append("figures/similarity.png")
        headline = headline_path.read_text(encoding="utf-8") if headline_path.is_file() else None
        write_text(
            out,
            results_markdown(
                metrics, losses, p.train.datasets, relations, rel, p.evaluate.protocol, headline
            ),
        )
    typer.echo(f"report: {out} with {len(made)} figures in {figures}/")


if __name__ == "__main__":
    app()
