"""The union readout: where class-relational BCE acts, read from the world truth.

The paper's evidence for C-R BCE (Figure 4, A-1, A-2) is fine-class prediction in the full union on images
whose dataset lacks the fine class: Cityscapes images whose lane markings come out as Mapillary's `lane
marking - general`, riders as `motorcyclist`. The restricted protocol never looks there. On a training
dataset D_i's val images this reads, on the pixels of every world class that another training dataset
names with a class outside D_i's label space, the top-1 among the union classes outside D_i's space (as
Figure 4's third column does), and counts it right when it is such a name; for sigmoid models also
whether that name's probability exceeds 0.5 (Figure 4's multi-label threshold). The synthetic world map
stored with every label is the truth; real data has none, so the readout is synthetic-only.

The top-1 readout is a ranking with no false-positive side: a model that names every outside class
everywhere would score well. Beside it, the full-union IoU: per union class c' outside D_i's space that
another training dataset names (a cell), the IoU between the pixels whose argmax over the whole union is
c' and the pixels of the world classes another dataset names c' (void world pixels left out) — false
positives and false negatives both count, and the argmax is the same for softmax and sigmoid scores.
A cell is reachable when a class of D_i's own space covers a world class that c' names, so that eq. 6
could give its pixels c' as secondary label; the marking comes from the label tables, not from a result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from uniseg.evaluate.protocols import ScoreMaps, Target, make_target
from uniseg.metrics import all_reduce_

THRESHOLD = 0.5  # the paper's multi-label threshold on a sigmoid probability (Sec. 4.4)


@dataclass(frozen=True)
class Readout:
    """What to read on one training dataset's images. outside: the union classes outside the dataset's
    label space, as a Target (compact index j = union channel outside.channels[j]); worlds: the world ids
    read and their names; accept[k]: bool [m], which outside classes name world class worlds[k]."""

    dataset: str
    outside: Target
    worlds: tuple[tuple[int, str], ...]
    accept: torch.Tensor  # bool [len(worlds), m]
    full: Target | None = None  # the whole union: the full-union IoU's argmax
    void: int = 256  # world ids from here on are void (not a world class)
    reachable: frozenset[str] = frozenset()  # the cells a relation can reach (union class names)

    def cells(self) -> list[tuple[int, str, torch.Tensor]]:
        """The full-union IoU's cells: (compact outside index j, its union class, the world ids another
        dataset names it), for every outside class that names a world class read."""
        union = self.full.classes if self.full is not None else ()
        out = []
        for j in range(self.accept.shape[1]):
            named = [w for k, (w, _) in enumerate(self.worlds) if self.accept[k, j]]
            if named and union:
                out.append((j, union[int(self.outside.channels[j])], torch.tensor(named, dtype=torch.long)))
        return out


def make_readout(
    dataset: str,
    space: Sequence[str],
    union: Sequence[str],
    world_classes: Sequence[str],
    names: dict[str, list[str]],
    covered: Sequence[str] = (),
) -> Readout | None:
    """names: {world class: its names outside `space`} (datasets.synthetic.outside_names); covered: the
    world classes the dataset's own label space names (a cell naming one of them is reachable). None when
    the union has no class outside the dataset's space or no world class to read."""
    outside = [c for c in union if c not in set(space)]
    read = [(world_classes.index(w), w) for w in names if any(n in outside for n in names[w])]
    if not outside or not read:
        return None
    accept = torch.tensor([[c in names[w] for c in outside] for _, w in read], dtype=torch.bool)
    reachable = frozenset(c for _, w in read if w in covered for c in names[w] if c in outside)
    full = make_target(list(union), union)
    return Readout(
        dataset, make_target(outside, union), tuple(read), accept, full, len(world_classes), reachable
    )


@dataclass(frozen=True)
class ReadoutScore:
    """Per world class read: top-1 accuracy (percent of its pixels whose outside-space top-1 is one of its
    outside names), the share whose such name has probability > THRESHOLD (sigmoid models; None for
    softmax), and the pixel count."""

    top1: dict[str, float]
    confident: dict[str, float] | None
    pixels: dict[str, int]
    iou: dict[str, float] | None = None  # the full-union IoU per cell (percent), where it has pixels
    reachable: tuple[str, ...] = ()  # the cells a relation can reach


class ReadoutScorer:
    """Accumulates the readout of one training dataset's val images."""

    def __init__(self, readout: Readout, sigmoid: bool):
        self.readout, self.sigmoid = readout, sigmoid
        n = len(readout.worlds)
        self.counts = torch.zeros(3, n, dtype=torch.float64)  # pixels, top-1 right, confident
        self.cells = readout.cells() if readout.full is not None else []
        self.overlap = torch.zeros(3, len(self.cells), dtype=torch.float64)  # both, predicted, truth

    def update(self, maps: ScoreMaps, worlds: torch.Tensor) -> None:
        """worlds: uint8 [B, H, W] world ids at the label resolution of `maps`."""
        top1 = maps.predict(self.readout.outside)  # compact outside index, [B, H, W]
        channels = self.readout.outside.channels
        for k, (w, _) in enumerate(self.readout.worlds):
            mask = worlds.to(top1.device) == w
            n = int(mask.sum())
            if not n:
                continue
            accept = self.readout.accept[k].to(top1.device)
            self.counts[0, k] += n
            self.counts[1, k] += float(accept[top1[mask]].sum())
            if self.sigmoid:
                probs = maps.probs(channels[self.readout.accept[k]])  # [B, names, H, W]
                self.counts[2, k] += float((probs.amax(1)[mask] > THRESHOLD).sum())
        if self.cells:
            self._overlap(maps, worlds.to(top1.device).long())

    def _overlap(self, maps: ScoreMaps, worlds: torch.Tensor) -> None:
        full = self.readout.full
        argmax = full.channels.to(worlds.device)[maps.predict(full)]  # union channel per pixel
        valid = worlds < self.readout.void
        for i, (j, _, named) in enumerate(self.cells):
            predicted = (argmax == int(self.readout.outside.channels[j])) & valid
            truth = torch.isin(worlds, named.to(worlds.device))
            counts = [(predicted & truth).sum(), predicted.sum(), truth.sum()]
            self.overlap[:, i] += torch.tensor([float(c) for c in counts], dtype=torch.float64)

    def result(self) -> ReadoutScore:
        all_reduce_(self.counts)
        all_reduce_(self.overlap)
        pixels, right, sure = self.counts
        read = [(k, name) for k, (_, name) in enumerate(self.readout.worlds) if pixels[k] > 0]
        share = lambda row, k: round(100 * float(row[k] / pixels[k]), 1)  # noqa: E731
        both, predicted, truth = self.overlap
        union = predicted + truth - both
        iou = {
            name: round(100 * float(both[i] / union[i]), 1)
            for i, (_, name, _) in enumerate(self.cells)
            if union[i] > 0
        }
        return ReadoutScore(
            top1={name: share(right, k) for k, name in read},
            confident={name: share(sure, k) for k, name in read} if self.sigmoid else None,
            pixels={name: int(pixels[k]) for k, name in read},
            iou=iou if self.cells else None,
            reachable=tuple(sorted(c for c in iou if c in self.readout.reachable)),
        )


def outside_top1(maps: ScoreMaps, readout: Readout) -> tuple[torch.Tensor, torch.Tensor]:
    """The outside-space top-1 of every pixel as union indices [B, H, W] and its probability [B, H, W]
    (Figure 4's third column), for the report's panels."""
    top1 = maps.predict(readout.outside)
    channels = readout.outside.channels.to(top1.device)[top1]
    score = torch.zeros(top1.shape, dtype=torch.float32, device=top1.device)
    for j in top1.unique().tolist():
        where = top1 == j
        score[where] = maps.probs(readout.outside.channels[j : j + 1])[:, 0][where].float()
    return channels, score
