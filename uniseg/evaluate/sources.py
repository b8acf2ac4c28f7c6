"""What a data source (params data.source) offers evaluation beyond its images and their own labels, asked
of one object, an EvalSource, rather than decided by branches on the source's name:

- the merged protocol's relations: synthetic, the policies' truth; real, the mined relations;
- a training set's ground truth in another dataset's label space (cross): synthetic, the stored world maps
  read through that dataset's policy; real, the labels renamed by the class names both spaces share;
- the union readout (readout.py): synthetic only, its truth is the world maps;
- the classes whose headroom an unseen set reports: synthetic only, which classes a true relation can
  move is known from the policies.

Negative frames (WildDash 2) are not a source's: they are a dataset's metadata (DatasetMeta.negatives),
scored on either source.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np
import torch

from uniseg import IGNORE
from uniseg.datasets.synthetic import WORLD_CLASSES, expected_relations, outside_names, world_to_space_lut
from uniseg.datasets.synthetic.policies import load_policy
from uniseg.datasets.synthetic.truth import oracle_relations
from uniseg.errors import DataError, UserError
from uniseg.evaluate.readout import Readout, make_readout
from uniseg.relations.mining import relation_triples

# (labels uint8 [B, H, W], world maps [uint8 [H, W]] per sample, keys) -> what a scorer's update takes
# besides the score maps
GroundTruth = Callable[[torch.Tensor, list, list], object]

# A true relation an unseen set scores only through an unsourced convention cell (docs/benchmark.md:
# CamVid's sign backs as traffic sign): the oracle arm leaves it out, and so does the headroom — the classes
# only it can move are not a relation's to gain (the oracle rule reads the headroom).
LEFT_OUT_RELATIONS = (("mapillary", "traffic sign (back)", "traffic sign"),)


def world_maps(labels: torch.Tensor, worlds: list, keys=None) -> torch.Tensor:
    """The world maps themselves, uint8 [B, H, W] (the union readout's truth)."""
    if any(w.numel() == 0 for w in worlds):
        raise DataError("the union readout needs the synthetic world maps, but a sample has none")
    return torch.stack(worlds)


def world_labels(lut: np.ndarray) -> GroundTruth:
    """Ground truth in another label space from the synthetic world map (lut: uint8 [256], world id ->
    class index in that space, IGNORE where it has none)."""
    table = torch.from_numpy(lut).long()

    def gt(labels: torch.Tensor, worlds: list, keys=None) -> torch.Tensor:
        if any(w.numel() == 0 for w in worlds):
            raise DataError("cross evaluation on synthetic data needs the world maps, but a sample has none")
        return table[torch.stack(worlds).long()].to(torch.uint8)

    return gt


def renamed_labels(source: Sequence[str], target: Sequence[str]) -> GroundTruth:
    """Ground truth in another label space for real data: only classes whose name exists in both."""
    position = {c: k for k, c in enumerate(target)}
    table = torch.full((256,), IGNORE, dtype=torch.uint8)
    for k, c in enumerate(source):
        if c in position:
            table[k] = position[c]

    def gt(labels: torch.Tensor, worlds: list, keys=None) -> torch.Tensor:
        return table[labels.long()]

    return gt


class EvalSource(ABC):
    """What evaluation may ask of a data source. readout_truth: the union readout's ground truth, None
    where the source has no readout (then no union task is planned and `readout` is never asked)."""

    readout_truth: ClassVar[GroundTruth | None] = None

    @property
    def reads_union(self) -> bool:
        """Whether each seen val split is also read in the full union (readout.py)."""
        return self.readout_truth is not None

    @abstractmethod
    def relations(self, datasets: Sequence[str]) -> list[tuple[str, str, str]]:
        """(dataset, union class, target class) triples for the merged protocol of a model trained on
        `datasets`: a union class merges into a target class that contains it."""

    @abstractmethod
    def cross_truth(self, space: str, source: Sequence[str], target: Sequence[str]) -> GroundTruth:
        """Ground truth of a training set's images (label space `source`) in the label space `target` of
        dataset `space`."""

    @abstractmethod
    def readout(
        self, dataset: str, space: Sequence[str], union: Sequence[str], train: Sequence[str]
    ) -> Readout | None:
        """What the union readout reads on training dataset `dataset`'s images (its label space `space`)
        for a model trained on `train` (its union `union`); None when there is nothing to read."""

    @abstractmethod
    def headroom_classes(self, train: Sequence[str], test: str) -> list[str] | None:
        """The classes of unseen set `test` whose headroom to report (TaskScore.headroom) for a model
        trained on `train`; None for no headroom."""


class SyntheticSource(EvalSource):
    """The embedded benchmark: it knows the world, so every question has a true answer from the
    policies and the world maps stored with the labels."""

    readout_truth = staticmethod(world_maps)

    def relations(self, datasets: Sequence[str]) -> list[tuple[str, str, str]]:
        """The policies' ground truth (datasets.synthetic.expected_relations), relations only."""
        return [(d, c, other) for d, c, other, kind in expected_relations(datasets) if kind == "relation"]

    def cross_truth(self, space: str, source: Sequence[str], target: Sequence[str]) -> GroundTruth:
        """The world map named by dataset `space`'s policy: exact, where renaming would lose every class
        the two spaces name differently."""
        return world_labels(world_to_space_lut(space))

    def readout(
        self, dataset: str, space: Sequence[str], union: Sequence[str], train: Sequence[str]
    ) -> Readout | None:
        """The world classes the other training datasets name outside `space` (truth.outside_names); a
        full-union cell is reachable when the dataset's own policy names one of its world classes."""
        covered = [w for w, name in load_policy(dataset).labels.items() if name in set(space)]
        return make_readout(dataset, space, union, WORLD_CLASSES, outside_names(dataset, train), covered)

    def headroom_classes(self, train: Sequence[str], test: str) -> list[str]:
        """The secondaries a true relation can add on `test`'s scored pixels (truth.oracle_relations),
        but for the relations left out as conventions (`LEFT_OUT_RELATIONS`)."""
        found = oracle_relations(train, [test])
        return sorted({c2 for r in found if r not in LEFT_OUT_RELATIONS for c2 in r[2:]})


class RealSource(EvalSource):
    """Real data: no world truth. multilabels: the relabel table (columns dataset, primary, secondary),
    None or empty for no merged relations."""

    def __init__(self, multilabels=None):
        self.multilabels = multilabels

    def relations(self, datasets: Sequence[str]) -> list[tuple[str, str, str]]:
        """The mined relations (primary -> secondary: the primary's pixels look like the secondary)."""
        if self.multilabels is None or len(self.multilabels) == 0:
            return []
        return relation_triples(self.multilabels)

    def cross_truth(self, space: str, source: Sequence[str], target: Sequence[str]) -> GroundTruth:
        return renamed_labels(source, target)

    def readout(self, dataset: str, space: Sequence[str], union: Sequence[str], train: Sequence[str]) -> None:
        return None

    def headroom_classes(self, train: Sequence[str], test: str) -> None:
        return None


def eval_source(name: str, multilabels=None) -> EvalSource:
    """The EvalSource of params data.source `name`; multilabels: the relabel table (real data only: the
    synthetic relations are the policies')."""
    if name == "synthetic":
        return SyntheticSource()
    if name == "real":
        return RealSource(multilabels)
    raise UserError(f"data.source {name!r}: unknown (synthetic | real)")
