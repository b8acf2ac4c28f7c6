"""The `uniseg` command: inspect label spaces and datasets, the synthetic benchmark, and prediction.

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
        )
    if failures:
        typer.echo(f"{len(failures)} input(s) failed:", err=True)
        for path, why in failures:
            typer.echo(f"  {path}: {why}", err=True)
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
