"""Abstention: when a model names no class (WildDash 2's negative frames).

A sigmoid model can decline every class; a softmax model always sums to one. The rule, the same for both
(the fair comparison): a pixel is void when its top probability over the test label space's classes is
below the model's threshold θ. θ is chosen on the seen val splits only — never on a test set — as the
largest value that keeps COVERAGE of their labelled pixels: at most 1 − COVERAGE of the in-distribution
pixels a model gets to abstain on. COVERAGE was fixed before any result (a common operating point for
out-of-distribution detection, 95 % of in-distribution samples kept). It is stored in the model's
evaluation record (reports/eval/<model>/details.json).

What a negative frame is scored by: the benchmark's own "negative mIoU" (WildDash 2, the UniSeg paper's
Table 4) is computed on its server and its definition was not found in the benchmark's published material
(docs/benchmark.md, "WildDash 2"). The closest honest metric is measured instead, under its own name:
`negative_void`, the share of negative-frame pixels the model leaves void — beside it `positive_void`, the
same share of the positive frames' pixels, so that voiding everything is seen for what it is.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from uniseg.evaluate.protocols import ScoreMaps, Scorer, Target, TaskScore
from uniseg.metrics import all_reduce_

COVERAGE = 0.95
BINS = 4096  # the histogram of top probabilities in [0, 1]: θ to 1/4096


class ConfidenceHistogram:
    """Top probabilities over a target's classes on the labelled pixels of a seen val split."""

    def __init__(self, target: Target):
        self.target = target
        self.counts = torch.zeros(BINS, dtype=torch.float64)

    def update(self, maps: ScoreMaps, labels: torch.Tensor) -> None:
        _, best = maps.top(self.target)
        labelled = self.target.lut.to(labels.device)[labels.long()] < len(self.target.channels)
        bins = (best[labelled].float().clamp(0, 1) * (BINS - 1)).long()
        self.counts += torch.bincount(bins.cpu(), minlength=BINS).double()

    def result(self) -> torch.Tensor:
        return all_reduce_(self.counts)


def threshold(counts: torch.Tensor, coverage: float = COVERAGE) -> float | None:
    """The largest θ (a bin's lower edge) with at least `coverage` of the counted pixels at or above it;
    None without any pixel."""
    total = float(counts.sum())
    if total <= 0:
        return None
    at_or_above = counts.flip(0).cumsum(0).flip(0)  # [b] = pixels in bins b..end
    keep = (at_or_above >= coverage * total).nonzero().flatten()
    return float(keep.max()) / (BINS - 1)


class NegativeScorer:
    """The share of the negative frames' pixels a model leaves void under threshold θ, and of the positive
    frames' pixels."""

    def __init__(self, target: Target, theta: float):
        self.target, self.theta = target, theta
        self.counts = torch.zeros(2, 2, dtype=torch.float64)  # [negative, positive] x [pixels, void pixels]

    def update(self, maps: ScoreMaps, negative: torch.Tensor) -> None:
        """negative: bool [B] (which images of the batch are negative frames)."""
        _, best = maps.top(self.target)
        negative = negative.to(best.device)
        for row, frames in enumerate((best[negative], best[~negative])):
            self.counts[row] += torch.tensor([frames.numel(), float((frames < self.theta).sum())])

    def result(self) -> tuple[float | None, float | None]:
        """(negative frames' void %, positive frames' void %), None for a kind with no frame."""
        counts = all_reduce_(self.counts).tolist()
        return tuple(round(100 * void / pixels, 1) if pixels else None for pixels, void in counts)


class WithNegatives:
    """A test set with negative frames: its Scorer (with the abstain protocol) and the void share of its
    negative frames, in one TaskScore (its ground truth gives the labels and which images are negative)."""

    def __init__(self, scorer: Scorer, negative: NegativeScorer):
        self.scorer, self.negative, self.target = scorer, negative, scorer.target

    def update(self, maps: ScoreMaps, labels: torch.Tensor, negative: torch.Tensor) -> None:
        self.scorer.update(maps, labels)
        self.negative.update(maps, negative)

    def result(self) -> TaskScore:
        negative, positive = self.negative.result()
        return replace(self.scorer.result(), negative_void=negative, positive_void=positive)
