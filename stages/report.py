"""Stage report: reports/results.md (tables per group and protocol, the paper's numbers for
orientation) and reports/figures/results/ (bars, the cross-label-space matrix, example predictions).
Everything comes from the evaluation's files: no model is loaded and nothing is predicted again."""

from __future__ import annotations

from pathlib import Path

import typer

from uniseg.errors import exit_on_user_error
from uniseg.fsio import atomic_dir, write_text
from uniseg.params import load_params
from uniseg.report.figures import (
    example_rows,
    plot_cross,
    plot_group_bars,
    plot_headline,
    plot_ladder,
    plot_panels,
)
from uniseg.report.readout import draw_readout
from uniseg.report.results import Converged, results_markdown
from uniseg.scores import (
    Metrics,
    headline_markdown,
    read_details,
    read_examples,
    read_headline,
    read_ladder,
    read_relation_metrics,
)

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
    ladder_path: Path = typer.Option(
        Path("reports/seeds/ladder/ladder.json"), "--ladder", help="`make ladder` output, shown when present."
    ),
    converged_path: Path = typer.Option(
        Path("reports/seeds/converged/headline.md"),
        "--converged",
        help="`make converged` output (the headline at the ladder's B*), shown when present.",
    ),
    eval_dir: Path = typer.Option(Path("reports/eval"), help="The evaluation's per-model folder."),
    out: Path = typer.Option(Path("reports/results.md"), help="Report to write."),
    figures: Path = typer.Option(Path("reports/figures/results"), help="Figure folder to write."),
) -> None:
    with exit_on_user_error():
        p = load_params(params)
        metrics = Metrics.read(metrics_path)
        details = {m: read_details(eval_dir, m)["model"] for m in metrics.models}
        losses = {m: details[m].get("loss", m) for m in metrics.models}
        predictions = {m: read_examples(eval_dir, m) for m in metrics.models}
        made = []
        headline = headline_markdown(p, headline_path)  # only a headline made from this data and profile
        with atomic_dir(figures) as tmp:
            for group in ("unseen", "seen"):
                if plot_group_bars(metrics, losses, group, tmp / f"{group}.png"):
                    made.append(f"{group}.png")
            if plot_cross(metrics, losses, p.train.datasets, tmp / "cross.png"):
                made.append("cross.png")
            for name, datasets in (
                ("examples_unseen.png", p.evaluate.unseen),
                ("examples_seen.png", p.train.datasets),
            ):
                if plot_panels(example_rows(predictions, datasets, shards, losses), tmp / name):
                    made.append(name)
            if draw_readout(eval_dir, details, predictions, p.train.datasets, shards, tmp / "readout.png"):
                made.append("readout.png")
            drawn = bool(headline) and plot_headline(read_headline(headline_path), tmp / "headline.png")
            ladder = read_ladder(p, ladder_path)  # only a ladder made from this data and benchmark size
            curves = bool(ladder) and plot_ladder(
                ladder["curve"], ladder["decision"], tmp / "ladder.png", ladder.get("unseen")
            )
            converged_text = headline_markdown(p, converged_path)  # the converged profile's, same data
            converged_summary = read_headline(converged_path) if converged_text else None
            converged_drawn = bool(converged_summary) and plot_headline(
                converged_summary, tmp / "headline_converged.png"
            )
        base = figures.relative_to(out.parent) if figures.is_relative_to(out.parent) else figures
        rel = [str(base / f) for f in made]
        if (out.parent / "figures" / "similarity.png").is_file():
            rel.append("figures/similarity.png")
        relations = read_relation_metrics(relations_path)
        thresholds = {m: d.get("abstain_threshold") for m, d in details.items()}
        converged = None
        if converged_text:
            converged = Converged(
                converged_summary,
                converged_text,
                (ladder or {}).get("decision", {}).get("budget"),
                read_headline(headline_path) if headline else None,
                p.train.iters,
                str(base / "headline_converged.png") if converged_drawn else None,
            )
        text = results_markdown(
            metrics, losses, p.train.datasets, relations, rel, p.evaluate.protocol, headline,
            str(base / "headline.png") if drawn else None, thresholds,
            ladder, str(base / "ladder.png") if curves else None, converged,
        )  # fmt: skip
        write_text(out, text)
    typer.echo(f"report: {out} with {len(made) + drawn + curves + converged_drawn} figures in {figures}/")


if __name__ == "__main__":
    app()
