"""Scoring a model's union probabilities in a test label space: the restricted and merged protocols.

- restricted (the paper's protocol): argmax over the channels of the target label space's classes that
  the model's union has; classes the union lacks are listed and excluded (their pixels are not scored,
  the other classes keep their alignment).
- merged: before the argmax, each target class also receives the scores of the union classes that the
  relations map into it (e.g. bicyclist and motorcyclist into rider). Scores are probabilities
  (softmax for a CE model, sigmoid otherwise), so adding them is meaningful.
- abstain (test sets with negative frames, WildDash 2): restricted, but a pixel whose top probability is
  below the model's abstention threshold (abstain.py, chosen on the seen val splits) is left void — a miss
  for any labelled pixel, as a benchmark server counts it.

A label space can also score the classes the union lacks (`score_missing`, as a benchmark server does):
they get compact indices after the evaluated ones, are never predicted, and so score IoU 0 where they occur.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from uniseg import IGNORE
from uniseg.metrics import all_reduce_, confusion_matrix, iou_per_class, mean_iou, perfected_miou
from uniseg.taxonomy import Resolution, resolve

PROTOCOLS = ("restricted", "merged")  # every task is scored under these
ABSTAIN = "abstain"  # only where the abstention threshold is given (Scorer(..., threshold=))


@dataclass(frozen=True)
class Target:
    """A label space to score in, resolved against a model's union.

    channels[j] is the union channel of evaluated class j (compact index); lut maps a label-space index
    to its compact index (255 for ignore and for classes the union lacks); merge lists (j, union channel)
    pairs added to class j under the merged protocol."""

    classes: list[str]
    resolution: Resolution
    channels: torch.Tensor  # int64 [m]
    lut: torch.Tensor  # int64 [256]
    merge: tuple[tuple[int, int], ...]
    scored_missing: tuple[str, ...] = ()  # classes the union lacks, scored (never predicted) after the m

    @property
    def evaluated(self) -> list[str]:
        """The scored classes, in compact-index order: the evaluated ones, then the scored missing ones."""
        return [self.classes[k] for k in self.resolution.evaluated] + list(self.scored_missing)

    @property
    def size(self) -> int:
        """The confusion matrix's side: predictions lie in [0, len(channels)), ground truth in [0, size)."""
        return len(self.channels) + len(self.scored_missing)


def make_target(
    classes: Sequence[str],
    union: Sequence[str],
    fallbacks: dict[str, str] | None = None,
    relations: Iterable[tuple[str, str, str]] = (),
    score_missing: bool = False,
) -> Target:
    """Resolve `classes` (a test label space) against `union`. relations: (dataset, primary, secondary)
    triples; a union class `primary` outside the target space merges into target class `secondary`.
    score_missing: score the classes the union lacks (IoU 0 where they occur) instead of leaving them out."""
    res = resolve(classes, union, fallbacks)
    evaluated = res.evaluated
    channels = torch.tensor([res.union_index[k] for k in evaluated], dtype=torch.long)
    lut = torch.full((256,), IGNORE, dtype=torch.long)
    for j, k in enumerate(evaluated):
        lut[k] = j
    scored_missing = tuple(res.missing) if score_missing else ()
    for j, c in enumerate(scored_missing, start=len(evaluated)):
        lut[list(classes).index(c)] = j
    compact = {classes[k]: j for j, k in enumerate(evaluated)}
    own = {union[int(c)] for c in channels}
    position = {c: i for i, c in enumerate(union)}
    merge = sorted(
        {
            (compact[secondary], position[primary])
            for _, primary, secondary in relations
            if secondary in compact and primary in position and primary not in own
        }
    )
    return Target(list(classes), res, channels, lut, tuple(merge), scored_missing)


def predict_labels(probs: torch.Tensor, target: Target, protocol: str = "restricted") -> torch.Tensor:
    """probs [B, K, H, W] union probabilities -> compact target indices [B, H, W] (never a class
    outside the evaluated target classes)."""
    scores = probs.index_select(1, target.channels.to(probs.device))
    if protocol == "merged" and target.merge:
        scores = scores.clone()
        for j, channel in target.merge:
            scores[:, j] += probs[:, channel]
    return scores.argmax(1)


def _top(probs: torch.Tensor, target: Target) -> tuple[torch.Tensor, torch.Tensor]:
    best, arg = probs.index_select(1, target.channels.to(probs.device)).max(1)
    return arg, best


def model_probs(model, images: torch.Tensor, info, window: int = 0) -> torch.Tensor:
    """Normalised images [B, 3, h, w] -> class probabilities [B, K, h, w] (softmax or sigmoid),
    predicted on the whole image or with overlapping square windows of side `window`."""
    if window and max(images.shape[-2:]) > window:
        logits = _sliding_logits(model, images, window)
    else:
        logits = model(images)
    return info.probs(logits)


def _sliding_logits(model, images: torch.Tensor, window: int) -> torch.Tensor:
    b, _, h, w = images.shape
    stride = max(1, window * 2 // 3)
    out, hits = None, torch.zeros(1, 1, h, w, device=images.device)
    ys = list(range(0, max(h - window, 0) + 1, stride))
    xs = list(range(0, max(w - window, 0) + 1, stride))
    if ys[-1] + window < h:
        ys.append(h - window)
    if xs[-1] + window < w:
        xs.append(w - window)
    for y in ys:
        for x in xs:
            y0, x0 = max(y, 0), max(x, 0)
            crop = images[..., y0 : y0 + window, x0 : x0 + window]
            logits = model(crop).float()
            if out is None:
                out = torch.zeros(b, logits.shape[1], h, w, device=images.device)
            out[..., y0 : y0 + window, x0 : x0 + window] += logits
            hits[..., y0 : y0 + window, x0 : x0 + window] += 1
    return out / hits


def upsample(probs: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Scores to the label's resolution (bilinear), so evaluation is at the original label size."""
    if tuple(probs.shape[-2:]) == tuple(size):
        return probs
    return F.interpolate(probs, size=size, mode="bilinear", align_corners=False)


# Score maps of every union class at label resolution are held at once only up to this many values
# (the 128x256 benchmark's batches); a 1080p image and 70 classes (580 MB) are scored MAP_CHUNK classes
# at a time instead, so memory does not grow with image size x union size. The values are the same.
FULL_MAPS_LIMIT = 32 * 2**20
MAP_CHUNK = 8


class ScoreMaps:
    """The class probabilities of a batch at label resolution, as upsample(model_probs(...)) gives them,
    but computed for the classes asked for, a few at a time.

    The logits stay at the feature stride; a channel is brought to the input size, turned into a
    probability (sigmoid(logit + offset); softmax as exp(logit - logsumexp), the log-denominator summed
    over class chunks) and upsampled to the label size when needed."""

    def __init__(self, model, info, images: torch.Tensor, size: tuple[int, int], window: int = 0):
        self.info, self.size, self.input_size = info, tuple(size), tuple(images.shape[-2:])
        if window and max(images.shape[-2:]) > window:
            self.model, self.logits = None, _sliding_logits(model, images, window).float()
        elif hasattr(model, "features"):  # a SegModel: logits at the feature stride
            self.model, self.logits = model, model.classifier(model.features(images)).float()
        else:  # any module mapping images to logits at the input size
            self.model, self.logits = None, model(images).float()
        k = self.logits.shape[1]
        self.lse = None
        if not info.sigmoid:
            for start in range(0, k, MAP_CHUNK):
                part = torch.logsumexp(self._input_logits(torch.arange(start, min(k, start + MAP_CHUNK))), 1)
                self.lse = part if self.lse is None else torch.logaddexp(self.lse, part)
        self.full = None
        if images.shape[0] * k * self.size[0] * self.size[1] <= FULL_MAPS_LIMIT:
            self.full = self._probs(torch.arange(k))

    def _input_logits(self, channels: torch.Tensor) -> torch.Tensor:
        x = self.logits.index_select(1, channels.to(self.logits.device))
        return x if self.model is None else self.model.to_input_size(x, self.input_size)

    def _probs(self, channels: torch.Tensor) -> torch.Tensor:
        x = self._input_logits(channels)
        p = torch.sigmoid(x + self.info.offset) if self.info.sigmoid else torch.exp(x - self.lse[:, None])
        return upsample(p, self.size)

    def probs(self, channels: torch.Tensor) -> torch.Tensor:
        """[B, len(channels), H, W] at label resolution."""
        if self.full is not None:
            return self.full.index_select(1, channels.to(self.full.device))
        return self._probs(channels)

    def predict(self, target: Target, protocol: str = "restricted") -> torch.Tensor:
        """Compact target indices [B, H, W]: the argmax over the target's classes (first maximum wins),
        as predict_labels gives it."""
        return self.top(target, protocol)[0]

    def top(self, target: Target, protocol: str = "restricted") -> tuple[torch.Tensor, torch.Tensor]:
        """(argmax [B, H, W] over the target's classes, its score [B, H, W]), kept as a running maximum
        over the classes — a class's map at a time (an argmax across channels is a slow strided reduction
        on the CPU; this is element-wise)."""
        merge: dict[int, list[int]] = {}
        for j, channel in target.merge if protocol == "merged" else ():
            merge.setdefault(j, []).append(channel)
        best = arg = None
        for start in range(0, len(target.channels), MAP_CHUNK):
            chunk = target.channels[start : start + MAP_CHUNK]
            maps = self.full[:, chunk.to(self.full.device)] if self.full is not None else self.probs(chunk)
            for i in range(len(chunk)):
                score = maps[:, i]
                for channel in merge.get(start + i, ()):
                    score = score + self.probs(torch.tensor([channel]))[:, 0]
                if best is None:
                    best, arg = score.clone(), torch.zeros_like(score, dtype=torch.long)
                else:  # strictly better only: an earlier class keeps a tie, as argmax does
                    better = score > best
                    best = torch.where(better, score, best)
                    arg.masked_fill_(better, start + i)
        return arg, best


@dataclass(frozen=True)
class TaskScore:
    """The scores of one (images, label space) evaluation, per protocol: mIoU (percent, one decimal; None
    when no evaluated class occurs), per-class IoU (percent; None for a class in neither ground truth nor
    prediction), the number of classes averaged and the confusion matrix (rows = ground truth). `missing`:
    the label space's classes that the model's union lacks (not scored). How these become metric keys is
    uniseg/scores.py's business."""

    miou: dict[str, float | None]
    iou: dict[str, dict[str, float | None]]
    classes: dict[str, int]
    missing: list[str]
    confusion: dict[str, list]
    # mIoU points (restricted) gained had every pixel of the `conflict` classes been right: the most a
    # change confined to them (a relation) can add. None when no conflict classes were given.
    headroom: float | None = None
    # A test set with negative frames: % of their pixels left void by the abstention rule (abstain.py).
    negative_void: float | None = None
    positive_void: float | None = None  # the same share of the positive frames' pixels


class Scorer:
    """Accumulates one confusion matrix per protocol for one (images, label space) evaluation. conflict:
    the target classes whose headroom to report (TaskScore.headroom), if any."""

    def __init__(
        self,
        target: Target,
        protocols: Sequence[str] = PROTOCOLS,
        conflict: Sequence[str] | None = None,
        threshold: float | None = None,
    ):
        self.target, self.conflict, self.threshold = target, conflict, threshold
        protocols = (*protocols, ABSTAIN) if threshold is not None else tuple(protocols)
        m = target.size
        # abstain: one more row and column for void (a prediction only), the misses it causes
        self.conf = {
            p: torch.zeros(m + (p == ABSTAIN), m + (p == ABSTAIN), dtype=torch.float64) for p in protocols
        }

    def update(self, scores: ScoreMaps | torch.Tensor, labels: torch.Tensor) -> None:
        """scores: ScoreMaps, or probabilities [B, K, H, W] at label resolution; labels [B, H, W]
        label-space indices (uint8)."""
        gt = self.target.lut.to(labels.device)[labels.long()]
        for protocol, conf in self.conf.items():
            if protocol == ABSTAIN:
                arg, best = (
                    scores.top(self.target) if isinstance(scores, ScoreMaps) else _top(scores, self.target)
                )
                pred = torch.where(best < self.threshold, self.target.size, arg)
            elif isinstance(scores, ScoreMaps):
                pred = scores.predict(self.target, protocol)
            else:
                pred = predict_labels(scores, self.target, protocol)
            conf += confusion_matrix(pred, gt, len(conf)).cpu()

    def result(self) -> TaskScore:
        names = self.target.evaluated
        miou, iou, counts, confusion = {}, {}, {}, {}
        for protocol, conf in self.conf.items():
            all_reduce_(conf)
            value, counts[protocol] = mean_iou(conf, list(range(len(names))))
            miou[protocol] = round(value, 1) if counts[protocol] else None
            iou[protocol] = {
                n: (None if np.isnan(v) else round(100 * float(v), 1))
                for n, v in zip(names, iou_per_class(conf)[: len(names)].tolist(), strict=True)
            }
            confusion[protocol] = conf.tolist()
        headroom = None
        if self.conflict is not None and PROTOCOLS[0] in self.conf and miou[PROTOCOLS[0]] is not None:
            rows = [names.index(c) for c in self.conflict if c in names]
            conf = self.conf[PROTOCOLS[0]]
            headroom = round(perfected_miou(conf, rows) - mean_iou(conf)[0], 2)
        return TaskScore(miou, iou, counts, list(self.target.resolution.missing), confusion, headroom)
