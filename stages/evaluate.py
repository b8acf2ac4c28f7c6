"""Stage evaluate: every trained model (base, crbce) on the unseen test sets, the seen val splits and —
with evaluate.cross — each training dataset in every other one's label space; restricted and merged
protocols. Writes reports/metrics.json (DVC metrics) and reports/eval/<model>/ (per-class IoU as a DVC
plot, confusion matrices, the classes each label space lacks in the model's union)."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from tqdm import tqdm

from uniseg import taxonomy
from uniseg.data import EvalSet, iter_batches, make_eval_loader
from uniseg.datasets.layout import read_meta
from uniseg.errors import DataError, UserError, exit_on_user_error
from uniseg.evaluation import (
    make_target,
    mean_of,
    merge_relations,
    own_labels,
    plan_tasks,
    renamed_labels,
    score_images,
    world_labels,
)
from uniseg.fsio import atomic_dir, write_json
from uniseg.params import load_params

app = typer.Typer(add_completion=False)


def _ground_truth(task, metas, source):
    if task.images == task.space:
        return own_labels
    if source == "synthetic":
        from uniseg.datasets.synthetic import world_to_space_lut

        return world_labels(world_to_space_lut(task.space))
    return renamed_labels(metas[task.images].classes, metas[task.space].classes)


def _evaluate(model_path, p, shards, relations_rows, device, progress):
    import torch

    from uniseg.models import load_model_file

    model, info = load_model_file(model_path, device)
    left_out = []
    if p.evaluate.leave_one_out:
        left_out = [
            d
            for d in taxonomy.known_datasets()
            if taxonomy.dataset_info(d).role == "train" and d not in info.datasets and (shards / d).is_dir()
        ]
    tasks = plan_tasks(info.datasets, p.evaluate.unseen, p.evaluate.seen, p.evaluate.cross, left_out)
    metas = {d: read_meta(shards / d) for d in {t.images for t in tasks} | {t.space for t in tasks}}
    relations = merge_relations(p.data.source, info.datasets, relations_rows)
    results = {}
    for images in dict.fromkeys(t.images for t in tasks):
        targets = {}
        for task in (t for t in tasks if t.images == images):
            meta = metas[task.space]
            try:
                target = make_target(meta.classes, info.classes, meta.fallbacks, relations)
            except UserError as exc:
                raise UserError(f"evaluate {task.group} {task.name}: {exc}") from None
            targets[task] = (target, _ground_truth(task, metas, p.data.source))
        split = "val"
        dataset = EvalSet(shards / images, split, p.evaluate.height)
        loader = make_eval_loader(dataset, p.evaluate.batch_size)
        bar = tqdm(
            total=len(dataset), desc=f"{Path(model_path).stem}: {images}", disable=not progress, leave=False
        )

        def batches(loader=loader, bar=bar):
            for batch in iter_batches(loader):
                yield batch
                bar.update(len(batch[0]))

        with torch.inference_mode():
            scorers = score_images(model, info, batches(), targets, device, p.evaluate.window)
        bar.close()
        for task, scorer in scorers.items():
            results[task] = scorer.result()
    return info, results


def _metrics(results: dict) -> dict:
    out: dict = {}
    for task, r in results.items():
        group = out.setdefault(task.group, {})
        group[task.name] = {
            "miou": r["miou"],
            "miou_merged": r.get("miou_merged"),
            "classes": r["classes"],
            "iou": {c: v for c, v in r["iou"]["restricted"].items() if v is not None},
        }
    for group in out.values():
        scored = dict(group)
        group["mean"] = mean_of(scored, "miou")
        group["mean_merged"] = mean_of(scored, "miou_merged")
    return out


def _details(results: dict, out_dir: Path) -> None:
    """reports/eval/<model>/: iou.json (DVC bar plot rows), details.json (per protocol, missing classes,
    confusion matrices)."""
    rows, details = [], {}
    for task, r in results.items():
        key = f"{task.group}/{task.name}"
        for cls, iou in r["iou"]["restricted"].items():
            if iou is not None:
                rows.append({"task": key, "class": cls, "key": f"{key}: {cls}", "iou": iou})
        classes = list(r["iou"]["restricted"])
        details[key] = {
            "images": task.images,
            "label_space": task.space,
            "miou": r["miou"],
            "miou_merged": r.get("miou_merged"),
            "classes": r["classes"],
            "missing": r["missing"],
            "iou": r["iou"],
            "confusion": {"classes": classes, **r["confusion"]},
        }
    write_json(out_dir / "iou.json", rows)
    write_json(out_dir / "details.json", details, indent=1)


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
    device: str = typer.Option(
        "cuda" if __import__("torch").cuda.is_available() else "cpu", help="cpu or cuda."
    ),
) -> None:
    start = time.perf_counter()
    with exit_on_user_error():
        p = load_params(params)
        rows = None
        if p.data.source == "real":
            from uniseg.relations import read_multilabels

            rows = read_multilabels(multilabels)
        present = [m for m in models if m.is_file()]
        if not present:
            raise DataError(
                f"no model file found among {', '.join(map(str, models))}; run the train stage first"
            )
        metrics = {}
        with atomic_dir(eval_dir) as tmp:
            for path in present:
                info, results = _evaluate(path, p, shards, rows, device, progress=True)
                metrics[path.stem] = _metrics(results)
                (tmp / path.stem).mkdir()
                _details(results, tmp / path.stem)
                line = ", ".join(f"{g} {v['mean']}" for g, v in metrics[path.stem].items())
                typer.echo(f"evaluate {path.stem} ({info.loss}): mean mIoU {line}")
        write_json(metrics_path, metrics)
    typer.echo(
        f"evaluate: {len(present)} model(s) in {time.perf_counter() - start:.1f}s -> {metrics_path}, {eval_dir}/"
    )


if __name__ == "__main__":
    app()
