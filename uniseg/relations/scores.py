"""How good mined relations are, on the synthetic benchmark whose truth is known: precision and recall
against the ground-truth relations, against the part of them eq. 6 can express, over τ, and for both of
eq. 6's candidate rules (the relabel stage writes these to reports/relations.{md,json})."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from uniseg.relations.mining import (
    CANDIDATE_RULES,
    candidates,
    choose_tau,
    derive_multilabels,
    relation_triples,
)

# Thresholds at which relabel scores the mined relations on the synthetic benchmark (with the chosen τ).
TAU_SWEEP = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 3) if b else None


def expressible_units(
    truth: Iterable[tuple[str, str, str]],
    equivalent: Iterable[tuple[str, str, str]],
    spaces: dict[str, Sequence[str]],
    rule: str = "others",
) -> list[frozenset]:
    """The part of the ground truth eq. 6 can produce by construction, as units of relations.

    - With the "outside" rule a secondary inside D_i's own label space is no candidate: dropped.
    - `equivalent` are the true relations whose primary covers exactly the secondary's pixels (two
      datasets name the same thing differently, e.g. IDD's rail track and the others' terrain). On such
      pixels s(c') > s(c) for one dataset contradicts s(c) > s(c') for the other, so eq. 6 can give at
      most one direction: all relations between the same two names form one unit, found when any is.
    Every other true relation is a unit of its own."""
    allowed = candidates(spaces, rule)
    equivalent = set(equivalent)
    units: dict = {}
    for d, a, b in sorted(set(truth)):
        if b not in allowed.get(d, ()):
            continue
        key = frozenset((a, b)) if (d, a, b) in equivalent else (d, a, b)
        units.setdefault(key, set()).add((d, a, b))
    return [frozenset(u) for u in units.values()]


def score_relations(
    mined: Iterable[tuple[str, str, str]],
    truth: Iterable[tuple[str, str, str]],
    units: list[frozenset] | None = None,
) -> dict:
    """Precision and recall of mined (dataset, primary, secondary) triples against the ground truth; with
    `units` (expressible_units) also against the part of it eq. 6 can produce: a mined relation counts
    for precision when it is in a unit, a unit for recall when any of its relations was mined."""
    mined, truth = set(mined), set(truth)
    hits = mined & truth
    out = {
        "precision": _ratio(len(hits), len(mined)),
        "recall": _ratio(len(hits), len(truth)),
        "mined": len(mined),
        "true": len(truth),
        "hits": len(hits),
        "false_positives": sorted(mined - truth),
        "missed": sorted(truth - mined),
    }
    if units is not None:
        inside = set().union(*units) if units else set()
        out["expressible"] = {
            "precision": _ratio(len(mined & inside), len(mined)),
            "recall": _ratio(sum(bool(u & mined) for u in units), len(units)),
            "units": len(units),
        }
    return out


def compare_rules(
    table: pd.DataFrame,
    spaces: dict[str, Sequence[str]],
    tau: float | str,
    truth: Iterable[tuple[str, str, str]],
    equivalent: Iterable[tuple[str, str, str]],
) -> dict[str, dict]:
    """Eq. 6 with each candidate rule (τ chosen per rule as relabel.tau says), scored against the full
    ground truth and against the part of it the rule can express: {rule: {tau, tau_pairs, relations,
    precision, recall, expressible_precision, expressible_recall}}."""
    truth, equivalent = list(truth), list(equivalent)
    out = {}
    for rule in CANDIDATE_RULES:
        value, pairs, _ = choose_tau(table, spaces, tau, rule)
        mined = relation_triples(derive_multilabels(table, spaces, value, rule))
        score = score_relations(mined, truth, expressible_units(truth, equivalent, spaces, rule))
        units = score["expressible"]["units"]
        out[rule] = {
            "tau": round(value, 4),
            "tau_pairs": pairs,
            "relations": len(mined),
            **{k: score[k] for k in ("precision", "recall", "mined", "true", "hits")},
            "expressible_precision": score["expressible"]["precision"],
            "expressible_recall": score["expressible"]["recall"],
            "expressible_units": units,
            "recall_ceiling": _ratio(units, len(truth)),
            **reachable_recalls(mined, truth, spaces),
        }
    return out


def paper_drawn(truth: Iterable[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The relations of the paper's Table A-1 (taxonomy.paper_relations: all Mapillary primaries) that the
    benchmark draws and the truth holds: the ones the paper's own eq. 6 found."""
    from uniseg.taxonomy import paper_relations

    truth = set(truth)
    return [
        ("mapillary", p, s) for p, s, drawn in paper_relations() if drawn and ("mapillary", p, s) in truth
    ]


def reachable_recalls(
    mined: Iterable[tuple[str, str, str]],
    truth: Iterable[tuple[str, str, str]],
    spaces: dict[str, Sequence[str]],
) -> dict:
    """Recall on the parts of the truth a target can fairly ask for: `paper_recall` on the Table A-1
    relations the world draws (`paper_drawn`), `outside_recall` on the relations whose secondary lies
    outside the primary dataset's own label space (the text's reading of eq. 6)."""
    mined, truth = set(mined), list(truth)
    paper = paper_drawn(truth)
    outside = [(d, a, b) for d, a, b in truth if b not in set(spaces[d])]
    return {
        "paper_recall": _ratio(len(mined & set(paper)), len(paper)),
        "paper_true": len(paper),
        "outside_recall": _ratio(len(mined & set(outside)), len(outside)),
    }


def assess_relations(
    table: pd.DataFrame,
    spaces: dict[str, Sequence[str]],
    multilabels: pd.DataFrame,
    tau: float,
    tau_param: float | str,
    rule: str,
    truth: Iterable[tuple[str, str, str]],
    equivalent: Iterable[tuple[str, str, str]],
) -> tuple[dict, list[dict], dict[str, dict]]:
    """The mined relations against the ground truth (synthetic data): their score (`score_relations`),
    the sweep of τ for `rule`, and both candidate rules compared (`compare_rules`)."""
    truth = list(truth)
    score = score_relations(relation_triples(multilabels), truth)
    sweep = tau_sweep(table, spaces, truth, (*TAU_SWEEP, tau), rule)
    return score, sweep, compare_rules(table, spaces, tau_param, truth, equivalent)


def tau_sweep(
    table: pd.DataFrame,
    spaces: dict[str, Sequence[str]],
    truth: Iterable[tuple[str, str, str]],
    taus: Iterable[float],
    rule: str = "others",
) -> list[dict]:
    """Eq. 6 at each τ, scored against the ground truth: how precision trades against recall."""
    truth = list(truth)
    rows = []
    for tau in sorted(set(taus)):
        score = score_relations(relation_triples(derive_multilabels(table, spaces, tau, rule)), truth)
        rows.append({"tau": tau, **{k: score[k] for k in ("mined", "hits", "precision", "recall")}})
    return rows
