"""Evaluating a model: which (images, label space) pairs to score — unseen test sets, seen val splits,
and each training dataset in every other one's label space (cross) — with which ground truth, and the
example predictions the report shows. The protocols themselves are in protocols.py; the files the
results go to in scores.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from uniseg import IGNORE, taxonomy
from uniseg.data import EvalSet, iter_batches, make_eval_loader
from uniseg.datasets.layout import read_meta
from uniseg.errors import DataError, UserError
from uniseg.protocols import ScoreMaps, Scorer, Target, make_target
from uniseg.scores import cross_name

GroundTruth = Callable[[torch.Tensor, list], torch.Tensor]


def own_labels(labels: torch.Tensor, worlds: list) -> torch.Tensor:
    return labels


def world_labels(lut: np.ndarray) -> GroundTruth:
    """Ground truth in another label space from the synthetic world map (lut: world id -> class)."""
    table = torch.from_numpy(lut).long()

    def gt(labels: torch.Tensor, worlds: list) -> torch.Tensor:
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

    def gt(labels: torch.Tensor, worlds: list) -> torch.Tensor:
        return table[labels.long()]

    return gt


@dataclass(frozen=True)
class Task:
    """Score the `split` images of `images` in label space `space` (group: unseen | seen | cross)."""

    group: str
    name: str  # metric key under the group: the dataset, or scores.cross_name(images, space) for cross
    images: str
    space: str


def plan_tasks(
    train: Sequence[str],
    unseen: Sequence[str],
    seen: Sequence[str],
    cross: bool,
    leave_one_out: Sequence[str] = (),
) -> list[Task]:
    """The evaluations of one model: unseen test sets (plus left-out training sets), seen val splits,
    and with `cross` every ordered pair (i, j), i != j, of training datasets."""
    tasks = [Task("unseen", d, d, d) for d in list(unseen) + [d for d in leave_one_out if d not in unseen]]
    tasks += [Task("seen", d, d, d) for d in seen if d in train]
    if cross:
        tasks += [Task("cross", cross_name(i, j), i, j) for i in train for j in train if i != j]
    return tasks


def merge_relations(source: str, datasets: Sequence[str], multilabels=None) -> list[tuple[str, str, str]]:
    """(dataset, union class, target class) triples for the merged protocol: a union class merges into
    a target class that contains it. Synthetic: the policies' ground truth; real: the mined relations
    (primary -> secondary: the pixels of the primary class look like the secondary one)."""
    if source == "synthetic":
        from uniseg.datasets.synthetic import expected_relations

        return [(d, c, other) for d, c, other, kind in expected_relations(datasets) if kind == "relation"]
    if multilabels is None or len(multilabels) == 0:
        return []
    from uniseg.relations import relation_triples

    return relation_triples(multilabels)


@torch.no_grad()
def score_images(
    model,
    info,
    batches,
    targets: dict[str, tuple[Target, GroundTruth]],
    device="cpu",
    window: int = 0,
    examples: tuple[object, int] | None = None,
) -> dict[str, Scorer] | tuple[dict[str, Scorer], list]:
    """Predict every batch once and score it in each target label space, at the labels' resolution.
    examples = (target key, n): also return the restricted predictions of the first n images in that
    target's label space, as [(key, uint8 [H, W] label-space indices)] (the report's example panels)."""
    from uniseg.models import flush_denormals

    flush_denormals()
    scorers = {k: Scorer(t) for k, (t, _) in targets.items()}
    kept: list = []
    for images, labels, worlds, keys in batches:
        maps = ScoreMaps(model, info, images.to(device), tuple(labels.shape[-2:]), window)
        for k, (_, gt) in targets.items():
            scorers[k].update(maps, gt(labels, worlds).to(device))
        if examples is not None and len(kept) < examples[1]:
            target = targets[examples[0]][0]
            pred = maps.predict(target)[: examples[1] - len(kept)].cpu()
            evaluated = torch.tensor(target.resolution.evaluated, dtype=torch.uint8)
            kept += [(key, evaluated[p].numpy()) for key, p in zip(keys, pred, strict=False)]
    return scorers if examples is None else (scorers, kept)


def _ground_truth(task: Task, metas: dict, source: str) -> GroundTruth:
    if task.images == task.space:
        return own_labels
    if source == "synthetic":
        from uniseg.datasets.synthetic import world_to_space_lut

        return world_labels(world_to_space_lut(task.space))
    return renamed_labels(metas[task.images].classes, metas[task.space].classes)


def evaluate_model(
    model, info, p, shards: Path, multilabels=None, device="cpu", progress: str = ""
) -> tuple[dict, dict]:
    """Score `model` (with its ModelInfo) on every task of params `p` (data.source, evaluate.*).
    multilabels: the relabel table (real data: the merged protocol's relations). progress: the label of
    a progress bar per image set ("" for none). Returns ({Task: TaskScore}, examples): examples =
    {dataset: [(key, prediction)]}, the restricted predictions of the first report.figure_images val
    images of each unseen dataset (one of each seen one), for the report's panels."""
    from tqdm import tqdm

    left_out = []
    if p.evaluate.leave_one_out:
        left_out = [
            d
            for d in taxonomy.known_datasets()
            if taxonomy.dataset_info(d).role == "train" and d not in info.datasets and (shards / d).is_dir()
        ]
    tasks = plan_tasks(info.datasets, p.evaluate.unseen, p.evaluate.seen, p.evaluate.cross, left_out)
    metas = {d: read_meta(shards / d) for d in {t.images for t in tasks} | {t.space for t in tasks}}
    relations = merge_relations(p.data.source, info.datasets, multilabels)
    results, examples = {}, {}
    for images in dict.fromkeys(t.images for t in tasks):
        targets = {}
        for task in (t for t in tasks if t.images == images):
            meta = metas[task.space]
            try:
                target = make_target(meta.classes, info.classes, meta.fallbacks, relations)
            except UserError as exc:
                raise UserError(f"evaluate {task.group} {task.name}: {exc}") from None
            targets[task] = (target, _ground_truth(task, metas, p.data.source))
        dataset = EvalSet(shards / images, "val", p.evaluate.height)
        bar = tqdm(total=len(dataset), desc=f"{progress}: {images}", disable=not progress, leave=False)

        def batches(loader=make_eval_loader(dataset, p.evaluate.batch_size), bar=bar):
            for batch in iter_batches(loader):
                yield batch
                bar.update(len(batch[0]))

        own = next((t for t in targets if t.space == images), None)
        n = (
            0
            if own is None
            else p.report.figure_images
            if own.group == "unseen"
            else min(p.report.figure_images, 1)
        )
        with torch.inference_mode():
            scorers, kept = score_images(model, info, batches(), targets, device, p.evaluate.window, (own, n))
        if kept:
            examples[images] = kept
        bar.close()
        results.update({task: scorer.result() for task, scorer in scorers.items()})
    return results, examples
