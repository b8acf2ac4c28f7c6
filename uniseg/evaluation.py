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
from uniseg.protocols import Scorer, Target, make_target, model_probs, predict_labels, upsample

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
    name: str  # metric key under the group: the dataset, or "<i>_in_<j>" for cross
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
        tasks += [Task("cross", f"{i}_in_{j}", i, j) for i in train for j in train if i != j]
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
) -> dict[str, Scorer]:
    """Predict every batch once and score it in each target label space."""
    scorers = {k: Scorer(t) for k, (t, _) in targets.items()}
    for images, labels, worlds, _ in batches:
        probs = upsample(model_probs(model, images.to(device), info, window), tuple(labels.shape[-2:]))
        for k, (_, gt) in targets.items():
            scorers[k].update(probs, gt(labels, worlds).to(device))
    return scorers


def _ground_truth(task: Task, metas: dict, source: str) -> GroundTruth:
    if task.images == task.space:
        return own_labels
    if source == "synthetic":
        from uniseg.datasets.synthetic import world_to_space_lut

        return world_labels(world_to_space_lut(task.space))
    return renamed_labels(metas[task.images].classes, metas[task.space].classes)


def evaluate_model(model, info, p, shards: Path, multilabels=None, device="cpu", progress: str = "") -> dict:
    """Score `model` (with its ModelInfo) on every task of params `p` (data.source, evaluate.*).
    multilabels: the relabel table (real data: the merged protocol's relations). progress: the label of
    a progress bar per image set ("" for none). Returns {Task: Scorer.result()}."""
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
    results = {}
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

        with torch.inference_mode():
            scorers = score_images(model, info, batches(), targets, device, p.evaluate.window)
        bar.close()
        results.update({task: scorer.result() for task, scorer in scorers.items()})
    return results


def example_panels(models: dict, datasets: Sequence[str], shards: Path, n: int, height: int, device="cpu"):
    """Rows of the report's example figure: the first `n` val images of each dataset, their ground truth
    and each model's restricted prediction in the dataset's label space. models: {name: (model, info)}.
    Row: {"title", "image" uint8 [H, W, 3], "panels": [(name, label uint8 [H, W], classes)]}."""
    rows = []
    for name in datasets:
        data = EvalSet(shards / name, "val", height, limit=n)
        for i in range(len(data)):
            image, label, _, key = data[i]
            panels = [("ground truth", label.numpy(), data.classes)]
            for model_name, (model, info) in models.items():
                target = make_target(data.classes, info.classes, data.reader.meta.fallbacks)
                with torch.inference_mode():
                    probs = upsample(model_probs(model, image[None].to(device), info), tuple(label.shape))
                    pred = predict_labels(probs, target, "restricted")[0].cpu()
                as_space = torch.tensor(target.resolution.evaluated, dtype=torch.uint8)[pred]
                panels.append((f"{model_name} ({info.loss})", as_space.numpy(), data.classes))
            raw = data.reader.read(data.rows[i]).image
            rows.append({"title": f"{name}: {key}", "image": raw, "panels": panels})
    return rows
