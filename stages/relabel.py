"""Stage relabel: eq. 6 with relabel.tau and relabel.candidates -> multi-labels for class-relational BCE,
the Table A-1 analogue (reports/relations.md), the heat map of s, and — on the synthetic benchmark —
precision and recall of the mined relations against the policies' ground truth, for both candidate
rules, on the full truth and on the part eq. 6 can express (reports/relations.json)."""

from __future__ import annotations

from pathlib import Path

import typer

from uniseg.datasets.layout import read_spaces
from uniseg.errors import DataError, exit_on_user_error
from uniseg.fsio import write_text
from uniseg.params import load_params
from uniseg.relations.mining import choose_tau, derive_multilabels, read_similarity, write_multilabels
from uniseg.relations.scores import assess_relations
from uniseg.report.relations import plot_similarity, relations_markdown
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
        rule = p.relabel.candidates
        spaces = read_spaces(shards, p.train.datasets)
        table = read_similarity(similarity)
        unknown = sorted(set(table["dataset"]) - set(spaces))
        if unknown:
            raise DataError(
                f"{similarity}: mined for {', '.join(unknown)}, not in train.datasets; rerun mine"
            )
        tau, pairs, source = choose_tau(table, spaces, p.relabel.tau, rule)
        multilabels = derive_multilabels(table, spaces, tau, rule)
        score, sweep, rules = None, None, None
        metrics = {
            "candidates": rule,
            "tau": round(tau, 4),
            "tau_pairs": pairs,
            "relations": len(multilabels),
        }
        if p.data.source == "synthetic":
            from uniseg.datasets.synthetic import ground_truth_relations

            truth = ground_truth_relations(p.train.datasets)
            score, sweep, rules = assess_relations(
                table, spaces, multilabels, tau, p.relabel.tau, rule, *truth
            )
            metrics.update({k: v for k, v in rules[rule].items() if k not in metrics})
            metrics["other_rule"] = next({"candidates": r, **v} for r, v in rules.items() if r != rule)
        write_multilabels(multilabels, out)
        text = relations_markdown(multilabels, tau, source, score, sweep, table, rules)
        write_text(reports / "relations.md", text)
        plot_similarity(
            table, list(dict.fromkeys(table["other"])), reports / "figures" / "similarity.png", multilabels
        )
        write_relation_metrics(reports / "relations.json", metrics)
    scored = "" if score is None else f", precision {score['precision']}, recall {score['recall']}"
    typer.echo(
        f"relabel: τ = {tau:.3f} ({p.relabel.tau}, {rule}), {len(multilabels)} relations{scored} -> {out}"
    )


if __name__ == "__main__":
    app()
