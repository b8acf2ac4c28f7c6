"""Stage evaluate: every trained model (base, crbce) on the unseen test sets, the seen val splits and —
with evaluate.cross — each training dataset in every other one's label space; restricted and merged
protocols. Writes reports/metrics.json (DVC metrics) and reports/eval/<model>/ (per-class IoU as a DVC
plot, confusion matrices, the classes each label space lacks in the model's union)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from uniseg.errors import DataError, exit_on_user_error
from uniseg.evaluate.evaluation import evaluate_model
from uniseg.fsio import atomic_dir
from uniseg.model.segmodel import load_model_file, resolve_device
from uniseg.params import load_params
from uniseg.relations.mining import read_multilabels
from uniseg.scores import GROUPS, Metrics, model_metrics, write_details, write_metrics

app = typer.Typer(add_completion=False)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="Parameters file."),
    shards: Path = typer.Option(Path("data/shards"), help="Shard root."),
    models: list[Path] = typer.Option(
        [Path("models/base.pt"), Path("models/crbce.pt")], "--model", help="Model files."
    ),
    multilabels: Path = typer.Option(
        Path("data/relations/multilabels.parquet"), help="Relabel output (real data: merged protocol)."
    ),
    metrics_path: Path = typer.Option(
        Path("reports/metrics.json"), "--metrics", help="Metrics file to write."
    ),
    eval_dir: Path = typer.Option(Path("reports/eval"), help="Per-model details folder."),
    device: str = typer.Option("auto", help="auto (cuda when available), cpu or cuda."),
) -> None:
    start = time.perf_counter()
    with exit_on_user_error():
        p = load_params(params)
        rows = read_multilabels(multilabels) if p.data.source == "real" else None
        present = [m for m in models if m.is_file()]
        if not present:
            raise DataError(
                f"no model file found among {', '.join(map(str, models))}; run the train stage first"
            )
        device = resolve_device(device)
        metrics = {}
        with atomic_dir(eval_dir) as tmp:
            for path in present:
                model, info = load_model_file(path, device)
                results, examples, record = evaluate_model(model, info, p, shards, rows, device, path.stem)
                metrics[path.stem] = model_metrics(results)
                (tmp / path.stem).mkdir()
                summary = {"loss": info.loss, "backbone": info.backbone, "classifier": info.classifier}
                summary.update(datasets=info.datasets, union=info.classes, **record)
                write_details(results, tmp / path.stem, summary, examples)
                means = Metrics({path.stem: metrics[path.stem]})
                line = ", ".join(f"{g} {means.mean(path.stem, g)}" for g in GROUPS if means.has(path.stem, g))
                typer.echo(f"evaluate {path.stem} ({info.loss}): mean mIoU {line}")
        write_metrics(metrics_path, metrics)
    typer.echo(
        f"evaluate: {len(present)} model(s) in {time.perf_counter() - start:.1f}s -> {metrics_path}, {eval_dir}/"
    )


if __name__ == "__main__":
    app()
