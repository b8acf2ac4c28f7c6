"""Class relationships (Section 3.3 of the paper): mine s_{i,c}, derive multi-labels with τ, score them.

- mine (eq. 7): for dataset i and its ground-truth class c, s^{c'}_{i,c} is the mean, over the pixels of
  class c in D_i, of the cosine similarity between the pixel's feature and the weight of union class c'.
  Sums and pixel counts are accumulated in float64 (and all-reduced across DDP processes).
- relabel (eq. 6): c' becomes a secondary label of (i, c) when s^{c'}_{i,c} > max(τ, s^{c}_{i,c}) and c'
  is a class of another training dataset (c' != c). As in the paper's Table A-1 (lane marking -> road,
  caravan -> car), c' may also be a class of D_i when another dataset has it: union classes are shared by
  name, and another dataset's "road" covers what D_i calls lane marking. A class that only D_i has is
  never a secondary label: D_i's own annotation says the pixel is not that class.
  τ = "auto" is the paper's choice: for every (i, c) whose highest-scoring class is another dataset's
  (a candidate secondary), take that highest score; τ is their mean.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from uniseg import IGNORE
from uniseg.errors import DataError
from uniseg.fsio import atomic_path

SIMILARITY_COLUMNS = ["dataset", "class", "other", "similarity", "pixels"]
MULTILABEL_COLUMNS = ["dataset", "primary", "secondary", "similarity"]
# Thresholds at which relabel scores the mined relations on the synthetic benchmark (with the chosen τ).
TAU_SWEEP = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4)


def accumulate_similarities(
    cosine: torch.Tensor, labels: torch.Tensor, sums: torch.Tensor, counts: torch.Tensor
) -> None:
    """cosine [B, K, H, W], labels [B, H, W] union indices (IGNORE skipped) -> adds into sums [K, K]
    (row = ground-truth class, column = union class) and counts [K], both float64, in place.

    Per image, one index_add over the pixel axis of the [K, H*W] cosines (no transpose, no copy of
    the valid pixels): ignore pixels go to an extra bin that is dropped. The batch's partial sums are
    float32 (terms of magnitude <= 1) and are accumulated in float64 across batches."""
    k = cosine.shape[1]
    flat = labels.reshape(labels.shape[0], -1).long()
    bad = (flat != IGNORE) & (flat >= k)
    if bool(bad.any()):
        raise DataError(f"label value {int(flat[bad][0])} is outside the model's {k} classes")
    flat = torch.where(flat == IGNORE, torch.full_like(flat, k), flat)
    partial = torch.zeros(k, k + 1, dtype=torch.float32, device=cosine.device)
    for b in range(cosine.shape[0]):
        partial.index_add_(1, flat[b], cosine[b].reshape(k, -1).float())
    sums += partial[:, :k].t().to(sums)
    counts += torch.bincount(flat.reshape(-1), minlength=k + 1)[:k].to(counts)


@torch.no_grad()
def mine_similarities(
    model, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], num_classes: int, device="cpu", progress=None
) -> dict[str, np.ndarray]:
    """One deterministic pass: batches of (normalised images [B,3,h,w], union labels [B,H,W]).

    The cosines are computed at the feature resolution and bilinearly upsampled to the label size, as
    the logits are at inference, so each labelled pixel is scored once. Returns {"sums", "pixels"}."""

    sums = torch.zeros(num_classes, num_classes, dtype=torch.float64, device=device)
    counts = torch.zeros(num_classes, dtype=torch.float64, device=device)
    model.eval()
    for images, labels in batches:
        images, labels = images.to(device), labels.to(device)
        cos = model.pixel_cosine(images).float()
        if cos.shape[-2:] != labels.shape[-2:]:  # images resized for the model: back to the label size
            cos = F.interpolate(cos, size=labels.shape[-2:], mode="bilinear", align_corners=False)
        accumulate_similarities(cos, labels, sums, counts)
        if progress is not None:
            progress(len(images))
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(sums)
        torch.distributed.all_reduce(counts)
    return {"sums": sums.cpu().numpy(), "pixels": counts.cpu().numpy()}


def similarity_table(
    per_dataset: dict[str, dict[str, np.ndarray]], union: Sequence[str], spaces: dict[str, Sequence[str]]
) -> pd.DataFrame:
    """Long table (dataset, class, other, similarity, pixels): one row per (dataset i, its class c that
    has pixels, union class c'), similarity = mean cosine s^{c'}_{i,c}."""
    position = {c: k for k, c in enumerate(union)}
    rows = []
    for name, acc in per_dataset.items():
        for c in spaces[name]:
            k = position[c]
            n = float(acc["pixels"][k])
            if n <= 0:
                continue
            for k2, other in enumerate(union):
                rows.append((name, c, other, float(acc["sums"][k, k2] / n), int(n)))
    return pd.DataFrame(rows, columns=SIMILARITY_COLUMNS)


def write_similarity(table: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)


def _read_table(path: str | Path, columns: list[str], stage: str) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: not found; run the {stage} stage first (dvc repro)")
    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(columns)}")
    return table


def read_similarity(path: str | Path) -> pd.DataFrame:
    return _read_table(path, SIMILARITY_COLUMNS, "mine")


def read_multilabels(path: str | Path) -> pd.DataFrame:
    return _read_table(path, MULTILABEL_COLUMNS, "relabel")


def _own_scores(table: pd.DataFrame) -> pd.Series:
    """(dataset, class) -> s of the class's own weight."""
    return table[table["class"] == table["other"]].set_index(["dataset", "class"])["similarity"]


def candidates(spaces: dict[str, Sequence[str]]) -> dict[str, set[str]]:
    """dataset i -> the union classes that may be secondary labels of its classes: those of the other
    training datasets."""
    return {i: {c for j, space in spaces.items() if j != i for c in space} for i in spaces}


def auto_tau(table: pd.DataFrame, spaces: dict[str, Sequence[str]]) -> tuple[float, int]:
    """The paper's τ: mean of the top score of every (i, c) whose top-scoring class is another
    dataset's class c' != c. Returns (τ, number of such (i, c)); with none, τ is the mean own-class
    score (nothing is related)."""
    tops = []
    allowed = candidates(spaces)
    for (name, c), group in table.groupby(["dataset", "class"], sort=True):
        best = group.loc[group["similarity"].idxmax()]
        if best["other"] != c and best["other"] in allowed[name]:
            tops.append(float(best["similarity"]))
    if tops:
        return float(np.mean(tops)), len(tops)
    own = _own_scores(table)
    return (float(own.mean()) if len(own) else 1.0), 0


def derive_multilabels(table: pd.DataFrame, spaces: dict[str, Sequence[str]], tau: float) -> pd.DataFrame:
    """Eq. 6: rows (dataset, primary, secondary, similarity) with s^{secondary}_{i,primary} >
    max(τ, s^{primary}_{i,primary}), secondary != primary a class of another training dataset."""
    own = _own_scores(table)
    allowed = candidates(spaces)
    rows = []
    for rec in table.itertuples(index=False):
        if rec.other == rec._1 or rec.other not in allowed[rec.dataset]:
            continue
        if rec.similarity > max(tau, own[(rec.dataset, rec._1)]):
            rows.append((rec.dataset, rec._1, rec.other, float(rec.similarity)))
    out = pd.DataFrame(rows, columns=MULTILABEL_COLUMNS)
    return out.sort_values(
        ["dataset", "primary", "similarity"], ascending=[True, True, False], ignore_index=True
    )


def score_relations(mined: Iterable[tuple[str, str, str]], truth: Iterable[tuple[str, str, str]]) -> dict:
    """Precision and recall of mined (dataset, primary, secondary) triples against the ground truth."""
    mined, truth = set(mined), set(truth)
    hits = mined & truth
    return {
        "precision": round(len(hits) / len(mined), 3) if mined else None,
        "recall": round(len(hits) / len(truth), 3) if truth else None,
        "mined": len(mined),
        "true": len(truth),
        "hits": len(hits),
        "false_positives": sorted(mined - truth),
        "missed": sorted(truth - mined),
    }


def tau_sweep(
    table: pd.DataFrame,
    spaces: dict[str, Sequence[str]],
    truth: Iterable[tuple[str, str, str]],
    taus: Iterable[float],
) -> list[dict]:
    """Eq. 6 at each τ, scored against the ground truth: how precision trades against recall."""
    truth = list(truth)
    rows = []
    for tau in sorted(set(taus)):
        mined = derive_multilabels(table, spaces, tau)
        score = score_relations(
            mined[["dataset", "primary", "secondary"]].itertuples(index=False, name=None), truth
        )
        rows.append({"tau": tau, **{k: score[k] for k in ("mined", "hits", "precision", "recall")}})
    return rows


def _why_missed(triple: tuple[str, str, str], tau: float, sims: dict | None) -> str:
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


def relations_markdown(
    multilabels: pd.DataFrame,
    tau: float,
    tau_source: str,
    score: dict | None,
    sweep: list[dict] | None = None,
    table: pd.DataFrame | None = None,
) -> str:
    """The Table A-1 analogue: primary -> secondary with scores and the chosen τ; with the similarity
    table, each primary's own score, and each missed or false relation says which score decided it."""
    sims, own = None, None
    if table is not None:
        sims = {(r.dataset, r._1, r.other): float(r.similarity) for r in table.itertuples(index=False)}
        own = _own_scores(table)
    lines = [
        "# Mined class relationships",
        "",
        f"τ = **{tau:.3f}** ({tau_source}). A union class c' is a secondary label of class c of dataset i when "
        "its mean cosine similarity with the pixels of c exceeds both τ and the similarity of c's own weight "
        "(eq. 6 of the paper); only classes of the other training datasets can be secondary labels.",
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
        lines.append("No relation exceeds τ: class-relational BCE reduces to Null BCE for this model.")
    else:
        lines += ["| dataset | primary | s(primary) | secondary | s(secondary) |", "|---|---|---:|---|---:|"]
        for rec in multilabels.itertuples(index=False):
            s_own = "" if own is None else f"{own[(rec.dataset, rec.primary)]:.3f}"
            lines.append(
                f"| {rec.dataset} | {rec.primary} | {s_own} | {rec.secondary} | {rec.similarity:.3f} |"
            )
    if score is not None and (score["missed"] or score["false_positives"]):
        lines += [
            "",
            "Missed true relations, with the eq. 6 condition each one fails: "
            + (", ".join(_why_missed(t, tau, sims) for t in score["missed"]) or "none")
            + ".",
        ]
        lines += [
            "",
            "False positives, with the primary's own score (a primary the model has not learned has an own "
            "score near 0, so the max(τ, s(c)) rule lets its surroundings through): "
            + (", ".join(_with_own(t, sims) for t in score["false_positives"]) or "none")
            + ".",
        ]
    if sweep:
        lines += [
            "",
            "## Precision and recall over τ",
            "",
            "The same similarities with other thresholds (eq. 6 unchanged; the row in bold is the τ used).",
            "",
            "| τ | mined | true | precision | recall |",
            "|---:|---:|---:|---:|---:|",
        ]
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
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_similarity(
    table: pd.DataFrame, union: Sequence[str], path: str | Path, multilabels: pd.DataFrame | None = None
) -> None:
    """Heat map of s: rows (dataset, class), columns union classes; mined relations outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(dict.fromkeys(zip(table["dataset"], table["class"], strict=True)))
    index = {r: i for i, r in enumerate(rows)}
    col = {c: j for j, c in enumerate(union)}
    grid = np.full((len(rows), len(union)), np.nan)
    for rec in table.itertuples(index=False):
        grid[index[(rec.dataset, rec._1)], col[rec.other]] = rec.similarity
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
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
