"""Stage relabel: eq. 6 with relabel.tau -> multi-labels for class-relational BCE, the Table A-1
analogue (reports/relations.md), the heat map of s, and — on the synthetic benchmark — precision and
recall of the mined relations against the policies' ground truth (reports/relations.json)."""

from __future__ import annotations

from pathlib import Path

import typer

from uniseg.datasets.layout import read_spaces
from uniseg.errors import DataError, exit_on_user_error
from uniseg.fsio import write_text
from uniseg.params import load_params
from uniseg.relations import (
    TAU_SWEEP,
    choose_tau,
    derive_multilabels,
    read_similarity,
    relation_triples,
    score_relations,
    tau_sweep,
    write_multilabels,
)
from uniseg.report.figures import plot_similarity
from uniseg.report.relations import relations_markdown
from uniseg.scores import write_relation_metrics

app = typer.Typer(add_completion=False)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="Parameters file."),
    shards: Path = typer.Option(Path("data/shards"), help="Shard root."),
    similarity: Path = typer.Option(Path("data/relations/similarity.parquet"), help="Mine output."),
    out: Path = typer.Option(Path("data/relations/multilabels.parquet"), help="Multi-labels to write."),
    reports: Path = typer.Option(Path("reports"), help="Where relations.md/.json and figures go."),
) -> None:
    with exit_on_user_error():
        p = load_params(params)
        spaces = read_spaces(shards, p.train.datasets)
        table = read_similarity(similarity)
        unknown = sorted(set(table["dataset"]) - set(spaces))
        if unknown:
            raise DataError(
                f"{similarity}: mined for {', '.join(unknown)}, not in train.datasets; rerun mine"
            )
        tau, pairs, source = choose_tau(table, spaces, p.relabel.tau)
        multilabels = derive_multilabels(table, spaces, tau)
        score, sweep = None, None
        metrics = {"tau": round(tau, 4), "tau_pairs": pairs, "relations": len(multilabels)}
        if p.data.source == "synthetic":
            from uniseg.datasets.synthetic import expected_relations

            truth = [
                (d, a, b) for d, a, b, kind in expected_relations(p.train.datasets) if kind == "relation"
            ]
            score = score_relations(relation_triples(multilabels), truth)
            sweep = tau_sweep(table, spaces, truth, (*TAU_SWEEP, tau))
            metrics.update({k: score[k] for k in ("precision", "recall", "mined", "true", "hits")})
        write_multilabels(multilabels, out)
        write_text(
            reports / "relations.md", relations_markdown(multilabels, tau, source, score, sweep, table)
        )
        plot_similarity(
            table, list(dict.fromkeys(table["other"])), reports / "figures" / "similarity.png", multilabels
        )
        write_relation_metrics(reports / "relations.json", metrics)
    scored = "" if score is None else f", precision {score['precision']}, recall {score['recall']}"
    typer.echo(f"relabel: τ = {tau:.3f} ({p.relabel.tau}), {len(multilabels)} relations{scored} -> {out}")


if __name__ == "__main__":
    app()
