"""The `uniseg` command: inspect label spaces and datasets, the synthetic benchmark, prediction, scoring and export.

Each command is a thin shell: it parses arguments and calls one library function. Heavy modules are
imported inside the commands so that `uniseg --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from uniseg.errors import exit_on_user_error

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])
synthetic_app = typer.Typer(no_args_is_help=True, help="The embedded synthetic benchmark.")
app.add_typer(synthetic_app, name="synthetic")


@app.command()
def taxonomy(
    datasets: list[str] = typer.Argument(..., help="Dataset names, e.g. cityscapes idd bdd mapillary."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON records instead of a table."),
) -> None:
    """Print the unified label space of DATASETS: index, class name, datasets that own it."""
    from uniseg import taxonomy as tx

    with exit_on_user_error():
        spaces = {d: tx.label_space(d) for d in datasets}
        records = tx.owners(tx.union(spaces.values()), spaces)
    if as_json:
        typer.echo(json.dumps(records))
        return
    for r in records:
        typer.echo(f"{r['index']:>3}  {r['name']:<28} {', '.join(r['datasets'])}")
    typer.echo(f"{len(records)} classes in the union of {', '.join(datasets)}")


@app.command()
def inspect(
    dataset: str = typer.Argument(..., help="Dataset name (see `uniseg taxonomy`)."),
    root: Path = typer.Option(..., "--root", help="The dataset's folder in its official layout."),
    split: str = typer.Option("val", "--split", help="train, val or test."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Validate a raw dataset in its official layout; print image count and pixels per class."""
    from uniseg.datasets.real import inspect_dataset

    with exit_on_user_error():
        result = inspect_dataset(dataset, root, split)
    if as_json:
        typer.echo(json.dumps(result))
        return
    typer.echo(f"{result['dataset']} {result['split']}: {result['images']} images")
    total = sum(result["pixels"].values()) or 1
    for name, count in result["pixels"].items():
        typer.echo(f"  {name:<28} {count:>14,d}  {100 * count / total:6.2f}%")


@synthetic_app.command("relations", context_settings={"allow_extra_args": True})
def synthetic_relations(
    ctx: typer.Context,
    datasets: list[str] = typer.Option(
        ["cityscapes", "bdd", "idd", "mapillary"],
        "--datasets",
        help="Synthetic training datasets: --datasets cityscapes bdd idd mapillary.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON records."),
) -> None:
    """Print the class relations expected from the synthetic labelling policies (the ground truth)."""
    from uniseg.datasets.synthetic import expected_relations

    datasets = list(datasets) + [a for a in ctx.args if not a.startswith("-")]
    with exit_on_user_error():
        rows = [
            {"dataset": d, "primary": a, "secondary": b, "kind": kind}
            for d, a, b, kind in expected_relations(datasets)
        ]
    if as_json:
        typer.echo(json.dumps([r for r in rows if r["kind"] == "relation"]))
        return
    for r in rows:
        arrow = "->" if r["kind"] == "relation" else "~ "
        note = "" if r["kind"] == "relation" else "  (partial overlap: ambiguous)"
        typer.echo(f"{r['dataset']:<12} {r['primary']:<28} {arrow} {r['secondary']}{note}")


@synthetic_app.command("conflicts", context_settings={"allow_extra_args": True})
def synthetic_conflicts(
    ctx: typer.Context,
    datasets: list[str] = typer.Option(
        ["cityscapes", "bdd", "idd", "mapillary"], "--datasets", help="Synthetic training datasets."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON records."),
) -> None:
    """Print every world class two datasets name differently, and whether Null BCE resolves the conflict."""
    from uniseg.datasets.synthetic import label_conflicts

    datasets = list(datasets) + [a for a in ctx.args if not a.startswith("-")]
    with exit_on_user_error():
        rows = label_conflicts(datasets)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for r in rows:
        verdict = "Null BCE resolves" if r["null_bce_resolves"] else "Null BCE cannot"
        names = f"{r['a']}: {r['name_a']} / {r['b']}: {r['name_b']}"
        typer.echo(f"{r['world']:<18} {names:<56} {verdict}")


@synthetic_app.command("preview")
def synthetic_preview(
    dataset: str = typer.Argument(..., help="Synthetic dataset (policy) name."),
    out: Path = typer.Option(..., "--out", help="PNG file to write."),
    images: int = typer.Option(4, "--images", min=1, max=16, help="Number of scenes."),
    seed: int = typer.Option(0, "--seed", help="World seed."),
) -> None:
    """Write a grid of synthetic scenes with their coloured label maps."""
    from uniseg.datasets.synthetic import write_preview

    with exit_on_user_error():
        write_preview(dataset, out, images=images, seed=seed)
    typer.echo(f"wrote {out}")


@app.command()
def predict(
    inputs: list[Path] = typer.Argument(..., help="Image files or directories of images."),
    model: Path = typer.Option(..., "--model", help="Model file written by the pipeline (models/*.pt)."),
    out: Path = typer.Option(None, "--out", help="Output directory (nothing is written outside it)."),
    label_space: str = typer.Option(
        None, "--label-space", help="Dataset whose classes to predict (default: the union)."
    ),
    multilabel_threshold: float = typer.Option(
        None,
        "--multilabel-threshold",
        help="Let classes outside the label space override where their score exceeds T.",
    ),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    height: int = typer.Option(0, "--height", help="Resize to this height before predicting (0 = as is)."),
    abstain_threshold: float = typer.Option(
        None,
        "--abstain-threshold",
        help="Void (255; 0 in a submission) where the top probability is below θ.",
    ),
    submission: Path = typer.Option(
        None, "--submission", help="Write the benchmark's zip (--label-space wilddash2) instead of --out."
    ),
    eval_dir: Path = typer.Option(
        Path("reports/eval"), "--eval-dir", help="Where the evaluate stage recorded the model's θ."
    ),
    runtime: str = typer.Option(
        "torch", "--runtime", help="torch (a model file) or onnx (a `uniseg export` file, ONNX Runtime)."
    ),
) -> None:
    """Segment images with a trained model; write a label PNG and a colour overlay per image, or a
    benchmark submission."""
    from uniseg.predict.predictor import predict_paths

    with exit_on_user_error():
        failures = predict_paths(
            inputs,
            model_path=model,
            out_dir=out,
            label_space=label_space,
            multilabel_threshold=multilabel_threshold,
            device=device,
            height=height,
            abstain_threshold=abstain_threshold,
            submission=submission,
            eval_dir=eval_dir,
            runtime=runtime,
        )
    if failures:
        typer.echo(f"{len(failures)} input(s) failed:", err=True)
        for path, why in failures:
            typer.echo(f"  {path}: {why}", err=True)
        raise typer.Exit(1)


@app.command()
def export(
    model: Path = typer.Option(..., "--model", help="Model file written by the pipeline (models/*.pt)."),
    out: Path = typer.Option(None, "--out", help="ONNX file to write (default: the model's name, .onnx)."),
    scores: str = typer.Option(
        "logits", "--scores", help="Graph output: logits, or probs (softmax or sigmoid(logits + offset))."
    ),
) -> None:
    """Export a model file to ONNX (dynamic batch, height and width; classes and score function in its
    metadata), checked against PyTorch in ONNX Runtime; `uniseg predict --runtime onnx` runs it."""
    from uniseg.predict.export import export_model

    with exit_on_user_error():
        result = export_model(model, out, scores)
    typer.echo(
        f"wrote {result['out']} (opset {result['opset']}, output {result['output']}, {result['classes']} "
        f"classes, {result['bytes'] / 2**20:.1f} MiB); ONNX Runtime vs PyTorch: max |diff| "
        f"{result['max_abs_diff']:.2g} (tolerance {result['tolerance']:.2g})"
    )


@app.command()
def score(
    dataset: str = typer.Option(..., "--dataset", help="Dataset whose val ground truth to score against."),
    predictions: Path = typer.Option(
        ...,
        "--predictions",
        help="Folder of single-channel label PNGs named <key>.png (uniseg predict --out).",
    ),
    ground_truth: Path = typer.Option(
        None,
        "--ground-truth",
        help="The dataset's folder in its official layout (or data/raw/<name>) instead of its shards.",
    ),
    shards: Path = typer.Option(
        Path("data/shards"), "--shards", help="Shard root (ground truth by default)."
    ),
    ids: str = typer.Option(
        "space",
        "--ids",
        help="space: label-space indices (uniseg predict --label-space); official: the dataset's own label "
        "ids (Cityscapes labelIds, ...); union: a model's union indices.",
    ),
    model: Path = typer.Option(
        None,
        "--model",
        help="Score only the classes this model's union has, as evaluate does; names the union.",
    ),
    classes: Path = typer.Option(
        None,
        "--classes",
        help="The union's class names instead of --model (a JSON list or predict's classes.json).",
    ),
    out: Path = typer.Option(None, "--out", help="Write the result as JSON to this file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a Markdown table."),
) -> None:
    """Score a folder of predictions against a dataset's ground truth: mIoU (classes present; absent as 0)
    and per-class IoU, as the evaluate stage scores."""
    from uniseg.fsio import write_json
    from uniseg.predict.score import score_predictions

    with exit_on_user_error():
        result = score_predictions(
            dataset, predictions, shards, ground_truth, ids, model, classes, progress=not as_json
        )
        if out is not None:
            write_json(out, result)
    typer.echo(json.dumps(result) if as_json else "\n".join(_score_markdown(result)))


def _score_markdown(result: dict) -> list[str]:
    """The score as Markdown: a summary line and one row per class (IoU %, one decimal)."""
    from uniseg.report.tables import markdown_table

    def percent(v):
        return "–" if v is None else f"{v:.1f}"

    means = result["mean_iou"]
    lines = [
        f"{result['dataset']}: {result['images']} images, {result['ids']} ids; mIoU {percent(means['present'])} "
        f"over the {result['classes_present']} classes in ground truth or prediction (uniseg, Cityscapes), "
        f"{percent(means['all'])} over all {len(result['iou'])} with absent classes as 0 (MSeg)",
        "",
    ]
    rows = [(name, percent(v)) for name, v in result["iou"].items()]
    lines += markdown_table(("class", "IoU"), rows, "lr")
    if result["not_scored"]:
        lines += [
            "",
            f"Not scored (the union lacks them, as the evaluate stage): {', '.join(result['not_scored'])}",
        ]
    if result["fallbacks"]:
        used = ", ".join(f"{a} as {b}" for a, b in result["fallbacks"].items())
        lines += ["", f"Scored through a fallback: {used}"]
    return lines


def main() -> None:
    app()


if __name__ == "__main__":
    main()
