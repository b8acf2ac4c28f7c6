"""Class relationships (Section 3.3 of the paper): mine s_{i,c} and derive multi-labels with τ (scoring
them against the synthetic benchmark's truth: relation_scores.py).

- mine (eq. 7): for dataset i and its ground-truth class c, s^{c'}_{i,c} is the mean, over the pixels of
  class c in D_i, of the cosine similarity between the pixel's feature and the weight of union class c'.
  Sums and pixel counts are accumulated in float64 (and all-reduced across DDP processes).
- relabel (eq. 6): c' becomes a secondary label of (i, c) when s^{c'}_{i,c} > max(τ, s^{c}_{i,c}) and c'
  is a candidate (c' != c). The paper is ambiguous about the candidates (`relabel.candidates`):
  "others" — any class of another training dataset, D_i's own included when another dataset has it: the
  relations the paper's model actually mined (Table A-1: lane marking - general -> road, caravan -> car,
  ground animal -> person are all within Mapillary's own space) — the default; "outside" — only classes
  outside D_i's label space (Y_u minus Y_i), as the sentence after eq. 6 reads. A class that only D_i has is
  never a candidate: D_i's own annotation says the pixel is not that class.
  τ = "auto" is the paper's choice: for every (i, c) whose highest-scoring class is a candidate, take
  that highest score; τ is their mean.
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
CANDIDATE_RULES = ("others", "outside")


# Union classes brought to label resolution at a time: memory grows with B x MINE_CHUNK x H x W, not
# with the union size (a 1080p image and 70 classes at once would be 580 MB of cosines).
MINE_CHUNK = 8


def _label_bins(labels: torch.Tensor, k: int) -> torch.Tensor:
    """labels [B, H, W] union indices -> [B, H*W] bins, IGNORE -> k (an extra bin that is dropped)."""
    flat = labels.reshape(labels.shape[0], -1).long()
    bad = (flat != IGNORE) & (flat >= k)
    if bool(bad.any()):
        raise DataError(f"label value {int(flat[bad][0])} is outside the model's {k} classes")
    return torch.where(flat == IGNORE, torch.full_like(flat, k), flat)


def accumulate_similarities(
    cosine: torch.Tensor,
    labels: torch.Tensor,
    sums: torch.Tensor,
    counts: torch.Tensor | None,
    start: int = 0,
) -> None:
    """cosine [B, k, H, W] of union classes start..start+k, labels [B, H, W] union indices (IGNORE
    skipped) -> adds into columns start..start+k of sums [K, K] (row = ground-truth class, column =
    union class) and, when given, into counts [K]; float64, in place.

    Per image, one index_add over the pixel axis of the [k, H*W] cosines (no transpose, no copy of
    the valid pixels). The batch's partial sums are float32 (terms of magnitude <= 1) and are
    accumulated in float64 across batches."""
    k, total = cosine.shape[1], sums.shape[0]
    flat = _label_bins(labels, total)
    partial = torch.zeros(k, total + 1, dtype=torch.float32, device=cosine.device)
    for b in range(cosine.shape[0]):
        partial.index_add_(1, flat[b], cosine[b].reshape(k, -1).float())
    sums[:, start : start + k] += partial[:, :total].t().to(sums)
    if counts is not None:
        counts += torch.bincount(flat.reshape(-1), minlength=total + 1)[:total].to(counts)


@torch.no_grad()
def mine_similarities(
    model, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], num_classes: int, device="cpu", progress=None
) -> dict[str, np.ndarray]:
    """One deterministic pass: batches of (normalised images [B,3,h,w], union labels [B,H,W]).

    The cosines are computed at the feature resolution and bilinearly upsampled to the label size, as
    the logits are at inference, so each labelled pixel is scored once — MINE_CHUNK union classes at a
    time, so memory does not grow with image size x union size. Returns {"sums", "pixels"}."""

    from uniseg.model.segmodel import tune_cpu

    tune_cpu()
    sums = torch.zeros(num_classes, num_classes, dtype=torch.float64, device=device)
    counts = torch.zeros(num_classes, dtype=torch.float64, device=device)
    model.eval()
    for images, labels in batches:
        images, labels = images.to(device), labels.to(device)
        cos = model.cosine(model.features(images)).float()  # [B, K, h, w] at the feature stride
        for start in range(0, num_classes, MINE_CHUNK):
            part = model.to_input_size(cos[:, start : start + MINE_CHUNK], images.shape[-2:])
            if part.shape[-2:] != labels.shape[-2:]:  # images resized for the model: back to the labels
                part = F.interpolate(part, size=labels.shape[-2:], mode="bilinear", align_corners=False)
            accumulate_similarities(part, labels, sums, counts if start == 0 else None, start)
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


def write_multilabels(table: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        table[MULTILABEL_COLUMNS].to_parquet(tmp, index=False)


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


def own_scores(table: pd.DataFrame) -> pd.Series:
    """(dataset, class) -> s of the class's own weight."""
    return table[table["class"] == table["other"]].set_index(["dataset", "class"])["similarity"]


def candidates(spaces: dict[str, Sequence[str]], rule: str = "others") -> dict[str, set[str]]:
    """dataset i -> the union classes that may be secondary labels of its classes: those of the other
    training datasets ("others"), or only those of them outside D_i's label space ("outside")."""
    out = {i: {c for j, space in spaces.items() if j != i for c in space} for i in spaces}
    if rule == "outside":
        out = {i: allowed - set(spaces[i]) for i, allowed in out.items()}
    return out


def auto_tau(
    table: pd.DataFrame, spaces: dict[str, Sequence[str]], rule: str = "others"
) -> tuple[float, int]:
    """The paper's τ: mean of the top score of every (i, c) whose top-scoring class is a candidate
    c' != c (another dataset's class). Returns (τ, number of such (i, c)); with none, τ is the mean
    own-class score (nothing is related)."""
    tops = []
    allowed = candidates(spaces, rule)
    for (name, c), group in table.groupby(["dataset", "class"], sort=True):
        best = group.loc[group["similarity"].idxmax()]
        if best["other"] != c and best["other"] in allowed[name]:
            tops.append(float(best["similarity"]))
    if tops:
        return float(np.mean(tops)), len(tops)
    own = own_scores(table)
    return (float(own.mean()) if len(own) else 1.0), 0


def choose_tau(
    table: pd.DataFrame, spaces: dict[str, Sequence[str]], tau: float | str, rule: str = "others"
) -> tuple[float, int, str]:
    """relabel.tau -> (τ, number of pairs it was averaged over, where it came from): "auto" is the
    paper's automatic choice (`auto_tau`); a number is used as given (0 pairs)."""
    if tau != "auto":
        return float(tau), 0, "relabel.tau"
    value, n = auto_tau(table, spaces, rule)
    why = f"auto: mean of the top score of the {n} (dataset, class) pairs whose best match is another dataset's class"
    return value, n, why


def derive_multilabels(
    table: pd.DataFrame, spaces: dict[str, Sequence[str]], tau: float, rule: str = "others"
) -> pd.DataFrame:
    """Eq. 6: rows (dataset, primary, secondary, similarity) with s^{secondary}_{i,primary} >
    max(τ, s^{primary}_{i,primary}), secondary != primary a candidate of dataset i (`candidates`)."""
    own = own_scores(table)
    allowed = candidates(spaces, rule)
    rows = []
    for rec in table.rename(columns={"class": "cls"}).itertuples(index=False):
        if rec.other == rec.cls or rec.other not in allowed[rec.dataset]:
            continue
        if rec.similarity > max(tau, own[(rec.dataset, rec.cls)]):
            rows.append((rec.dataset, rec.cls, rec.other, float(rec.similarity)))
    out = pd.DataFrame(rows, columns=MULTILABEL_COLUMNS)
    return out.sort_values(
        ["dataset", "primary", "similarity"], ascending=[True, True, False], ignore_index=True
    )


def relation_triples(multilabels: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(dataset, primary, secondary) of each row of a multi-label table."""
    return list(multilabels[["dataset", "primary", "secondary"]].itertuples(index=False, name=None))
