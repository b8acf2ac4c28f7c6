"""The relabel stage's presentation: reports/relations.md (the Table A-1 analogue of the mined
relations, with the score that decided each missed or false one, and precision/recall over τ on the
synthetic benchmark) and the heat map of s (`plot_similarity`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from uniseg.plotting import pyplot, save_figure
from uniseg.relations.mining import own_scores
from uniseg.report.tables import markdown_table

# The columns of the candidate rules' table (`_rules`).
RULES_HEADER = [
    "candidates",
    "τ",
    "mined",
    "precision",
    "recall",
    "ceiling",
    "expressible precision",
    "expressible recall",
    "Table A-1 recall",
    "out-of-space recall",
]


def _why_missed(triple: tuple[str, str, str], sims: dict | None) -> str:
    d, a, b = triple
    text = f"{d}: {a} → {b}"
    if sims is None or (d, a, b) not in sims:
        return text
    s, own = sims[(d, a, b)], sims.get((d, a, a), float("nan"))
    if s <= own:
        return f"{text} (s = {s:.3f} ≤ own {own:.3f})"
    return f"{text} (s = {s:.3f} ≤ τ)"


def _with_own(triple: tuple[str, str, str], sims: dict | None) -> str:
    d, a, b = triple
    if sims is None or (d, a, a) not in sims:
        return f"{d}: {a} → {b}"
    return f"{d}: {a} → {b} (own {sims[(d, a, a)]:.3f})"


def _mined(multilabels: pd.DataFrame, tau: float, tau_source: str, score: dict | None, own) -> list[str]:
    """The title, the rule, the score against the truth and the table of mined relations."""
    lines = [
        "# Mined class relationships",
        "",
        f"τ = **{tau:.3f}** ({tau_source}). A union class c' is a secondary label of class c of dataset i when "
        "its mean cosine similarity with the pixels of c exceeds both τ and the similarity of c's own weight "
        "(eq. 6 of the paper); only classes of the other training datasets can be secondary labels "
        "(relabel.candidates: `others` also admits such a class when D_i has it too, as the paper's Table A-1 "
        "does; `outside` only classes outside D_i's label space).",
        "",
    ]
    if score is not None:
        p = "–" if score["precision"] is None else f"{score['precision']:.2f}"
        r = "–" if score["recall"] is None else f"{score['recall']:.2f}"
        lines += [
            f"Against the synthetic benchmark's ground truth: precision **{p}**, recall **{r}** "
            f"({score['hits']} of {score['mined']} mined relations are true; {score['true']} true relations).",
            "",
        ]
    if multilabels.empty:
        return lines + ["No relation exceeds τ: class-relational BCE reduces to Null BCE for this model."]
    rows = []
    for rec in multilabels.itertuples(index=False):
        s_own = "" if own is None else f"{own[(rec.dataset, rec.primary)]:.3f}"
        rows.append([rec.dataset, rec.primary, s_own, rec.secondary, f"{rec.similarity:.3f}"])
    header = ["dataset", "primary", "s(primary)", "secondary", "s(secondary)"]
    return lines + markdown_table(header, rows, "llrlr")


def _errors(score: dict | None, sims: dict | None) -> list[str]:
    """Each missed or false relation with the score that decided it."""
    if score is None or not (score["missed"] or score["false_positives"]):
        return []
    return [
        "",
        "Missed true relations, with the eq. 6 condition each one fails: "
        + (", ".join(_why_missed(t, sims) for t in score["missed"]) or "none")
        + ".",
        "",
        "False positives, with the primary's own score (a primary the model has not learned has an own "
        "score near 0, so the max(τ, s(c)) rule lets its surroundings through): "
        + (", ".join(_with_own(t, sims) for t in score["false_positives"]) or "none")
        + ".",
    ]


def _rules(rules: dict[str, dict] | None) -> list[str]:
    """Both candidate rules side by side (relation_scores.compare_rules)."""
    if not rules:
        return []
    rows = []
    for name, r in rules.items():
        cells = [
            r["precision"],
            r["recall"],
            r.get("recall_ceiling"),
            r["expressible_precision"],
            r["expressible_recall"],
            r.get("paper_recall"),
            r.get("outside_recall"),
        ]
        rows.append(
            [name, f"{r['tau']:.3f}", str(r["relations"])] + ["–" if c is None else f"{c:.2f}" for c in cells]
        )
    return [
        "",
        "## Candidate rules",
        "",
        "Eq. 6 with each reading of its candidate set (τ chosen the same way). *Expressible*: scored against "
        "the part of the ground truth the rule can produce by construction — `outside` cannot name a class "
        "of D_i's own space, and where two datasets name the same pixels differently (IDD's rail track, the "
        "others' terrain) eq. 6 can give at most one direction, so such a pair counts once.",
        "",
        "*Table A-1 recall*: of the paper's own mined relations (its Table A-1) that the world draws; "
        "*out-of-space recall*: of the true relations whose secondary lies outside the primary's own label "
        "space. *Ceiling*: the full recall a perfect eq. 6 could reach (expressible units / true relations).",
        "",
        *markdown_table(RULES_HEADER, rows, "l" + "r" * 9),
    ]


def _sweep(sweep: list[dict] | None, tau: float) -> list[str]:
    """Precision and recall of the same similarities at other thresholds."""
    if not sweep:
        return []
    rows = []
    for row in sweep:
        cells = [
            f"{row['tau']:.3f}",
            str(row["mined"]),
            str(row["hits"]),
            "–" if row["precision"] is None else f"{row['precision']:.2f}",
            "–" if row["recall"] is None else f"{row['recall']:.2f}",
        ]
        if row["tau"] == tau:
            cells = [f"**{c}**" for c in cells]
        rows.append(cells)
    return [
        "",
        "## Precision and recall over τ",
        "",
        "The same similarities with other thresholds (eq. 6 unchanged; the row in bold is the τ used).",
        "",
        *markdown_table(["τ", "mined", "true", "precision", "recall"], rows, "rrrrr"),
    ]


def relations_markdown(
    multilabels: pd.DataFrame,
    tau: float,
    tau_source: str,
    score: dict | None,
    sweep: list[dict] | None = None,
    table: pd.DataFrame | None = None,
    rules: dict[str, dict] | None = None,
) -> str:
    """The Table A-1 analogue: primary -> secondary with scores and the chosen τ; with the similarity
    table, each primary's own score, and each missed or false relation says which score decided it;
    with `rules` (relation_scores.compare_rules), both candidate rules side by side."""
    sims, own = None, None
    if table is not None:
        sims = {
            (r.dataset, r.cls, r.other): float(r.similarity)
            for r in table.rename(columns={"class": "cls"}).itertuples(index=False)
        }
        own = own_scores(table)
    lines = _mined(multilabels, tau, tau_source, score, own)
    lines += _errors(score, sims) + _rules(rules) + _sweep(sweep, tau)
    return "\n".join(lines) + "\n"


def plot_similarity(
    table: pd.DataFrame, union: Sequence[str], path: str | Path, multilabels: pd.DataFrame | None = None
) -> None:
    """Heat map of s: rows (dataset, class), columns union classes; mined relations outlined."""
    plt = pyplot()
    rows = list(dict.fromkeys(zip(table["dataset"], table["class"], strict=True)))
    index = {r: i for i, r in enumerate(rows)}
    col = {c: j for j, c in enumerate(union)}
    grid = np.full((len(rows), len(union)), np.nan)
    for rec in table.rename(columns={"class": "cls"}).itertuples(index=False):
        grid[index[(rec.dataset, rec.cls)], col[rec.other]] = rec.similarity
    fig, ax = plt.subplots(figsize=(max(8, 0.28 * len(union) + 3), max(6, 0.2 * len(rows) + 2)))
    im = ax.imshow(grid, cmap="magma", vmin=-0.2, vmax=1.0, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(union)), union, rotation=90, fontsize=7)
    ax.set_yticks(range(len(rows)), [f"{d}: {c}" for d, c in rows], fontsize=6)
    if multilabels is not None:
        for rec in multilabels.itertuples(index=False):
            if (rec.dataset, rec.primary) in index:
                y, x = index[(rec.dataset, rec.primary)], col[rec.secondary]
                ax.add_patch(
                    plt.Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="cyan", linewidth=1.5)
                )
    fig.colorbar(im, ax=ax, label="mean cosine similarity s", shrink=0.6)
    ax.set_title("s: pixels of (dataset: class) vs. every union class weight (cyan: mined relation)")
    fig.tight_layout()
    save_figure(fig, path)
