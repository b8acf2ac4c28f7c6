"""Evaluating a model: which (images, label space) pairs to score — unseen test sets, seen val splits,
each training dataset in every other one's label space (cross), and on synthetic data each seen val split
read in the full union (readout.py) — with which ground truth, and the example predictions the report
shows. The protocols themselves are in protocols.py; the files the
results go to in scores.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from uniseg import IGNORE, taxonomy
from uniseg.abstain import COVERAGE, ConfidenceHistogram, NegativeScorer, WithNegatives, threshold
from uniseg.data import EvalSet, iter_batches, make_eval_loader
from uniseg.datasets.layout import read_meta
from uniseg.errors import DataError, UserError
from uniseg.protocols import ScoreMaps, Scorer, make_target
from uniseg.readout import ReadoutScorer, make_readout, outside_top1
from uniseg.scores import cross_name

# (labels [B, H, W], world maps, keys) -> what a scorer's update takes besides the score maps
GroundTruth = Callable[[torch.Tensor, list, list], object]


def own_labels(labels: torch.Tensor, worlds: list, keys=None) -> torch.Tensor:
    return labels


def world_maps(labels: torch.Tensor, worlds: list, keys=None) -> torch.Tensor:
    """The world maps themselves (the union readout's truth)."""
    if any(w.numel() == 0 for w in worlds):
        raise DataError("the union readout needs the synthetic world maps, but a sample has none")
    return torch.stack(worlds)


def world_labels(lut: np.ndarray) -> GroundTruth:
    """Ground truth in another label space from the synthetic world map (lut: world id -> class)."""
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


@dataclass(frozen=True)
class Task:
    """Score the `split` images of `images` in label space `space` (group: unseen | seen | cross), or read
    them in the full union (group: union, the readout)."""

    group: str
    name: str  # metric key under the group: the dataset, or scores.cross_name(images, space) for cross
    images: str
    space: str
    in_mean: bool = True  # averaged into its group's mean (WildDash 2 is not: a benchmark of its own)


def plan_tasks(
    train: Sequence[str],
    unseen: Sequence[str],
    seen: Sequence[str],
    cross: bool,
    leave_one_out: Sequence[str] = (),
    union: bool = False,
) -> list[Task]:
    """The evaluations of one model: unseen test sets (plus left-out training sets), seen val splits,
    with `cross` every ordered pair (i, j), i != j, of training datasets, and with `union` the union
    readout of each seen val split (synthetic data: it needs the world maps)."""
    tasks = [
        Task("unseen", d, d, d, in_mean=_in_mean(d))
        for d in list(unseen) + [d for d in leave_one_out if d not in unseen]
    ]
    tasks += [Task("seen", d, d, d) for d in seen if d in train]
    if cross:
        tasks += [Task("cross", cross_name(i, j), i, j) for i in train for j in train if i != j]
    if union:
        tasks += [Task("union", d, d, d) for d in seen if d in train]
    return tasks


def _in_mean(name: str) -> bool:
    known = name in taxonomy.known_datasets()
    return taxonomy.dataset_info(name).in_mean if known else True


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


@dataclass
class Examples:
    """What the report shows of the first images of a set: restricted predictions in the set's own label
    space [(key, uint8 label-space indices)] and, for a training set, the outside-space top-1 of the union
    readout [(key, uint8 union indices, uint8 probability x 255)]."""

    n: int
    own: object = None  # the key of the set's own label space among the scorers
    readout: object = None  # the key of its union readout
    labels: list = field(default_factory=list)
    outside: list = field(default_factory=list)


@torch.no_grad()
def score_images(
    model,
    info,
    batches,
    scorers: dict[object, tuple[object, GroundTruth]],
    device="cpu",
    window: int = 0,
    examples: Examples | None = None,
) -> dict:
    """Predict every batch once and update each scorer (a Scorer in its target label space, or a
    ReadoutScorer) with its ground truth, at the labels' resolution. Returns the scorers; fills
    `examples` with the first images' predictions."""
    from uniseg.models import flush_denormals

    flush_denormals()
    for images, labels, worlds, keys in batches:
        maps = ScoreMaps(model, info, images.to(device), tuple(labels.shape[-2:]), window)
        for scorer, gt in scorers.values():
            truth = gt(labels, worlds, keys)
            scorer.update(maps, *(t.to(device) for t in (truth if isinstance(truth, tuple) else (truth,))))
        if examples is not None and len(examples.labels) < examples.n:
            _keep_examples(maps, keys, scorers, examples)
    return {k: scorer for k, (scorer, _) in scorers.items()}


def _keep_examples(maps: ScoreMaps, keys, scorers: dict, examples: Examples) -> None:
    room = examples.n - len(examples.labels)
    if examples.own is not None:
        target = scorers[examples.own][0].target
        pred = maps.predict(target)[:room].cpu()
        evaluated = torch.tensor(target.resolution.evaluated, dtype=torch.uint8)
        examples.labels += [(key, evaluated[p].numpy()) for key, p in zip(keys, pred, strict=False)]
    if examples.readout is not None:
        top1, score = outside_top1(maps, scorers[examples.readout][0].readout)
        score = (score[:room] * 255 + 0.5).clamp(0, 255).to(torch.uint8).cpu()
        top1 = top1[:room].to(torch.uint8).cpu()
        examples.outside += [(k, c.numpy(), s.numpy()) for k, c, s in zip(keys, top1, score, strict=False)]


def _ground_truth(task: Task, metas: dict, source: str) -> GroundTruth:
    if task.group == "union":
        return world_maps
    if task.images == task.space:
        negatives = set(metas[task.images].negatives)
        if not negatives:
            return own_labels
        return lambda labels, worlds, keys: (labels, torch.tensor([k in negatives for k in keys]))
    if source == "synthetic":
        from uniseg.datasets.synthetic import world_to_space_lut

        return world_labels(world_to_space_lut(task.space))
    return renamed_labels(metas[task.images].classes, metas[task.space].classes)


def _scorer(task: Task, info, metas: dict, relations, synthetic: bool, theta: float | None):
    """The scorer of one task: a Scorer in the task's label space (with the headroom of the classes a true
    relation can move, on a synthetic unseen set; with abstention and its negative frames, on a set that
    has them), a seen split's confidence histogram (for θ), or the union readout's ReadoutScorer."""
    meta = metas[task.space]
    try:
        if task.group == "union":
            from uniseg.datasets.synthetic import WORLD_CLASSES, outside_names

            names = outside_names(task.images, info.datasets)
            readout = make_readout(task.images, meta.classes, info.classes, WORLD_CLASSES, names)
            return None if readout is None else ReadoutScorer(readout, info.sigmoid)
        conflict = None
        if synthetic and task.group == "unseen":
            from uniseg.datasets.synthetic.truth import scored_secondaries

            conflict = scored_secondaries(info.datasets, task.space)
        score_missing = (
            meta.name in taxonomy.known_datasets() and taxonomy.dataset_info(meta.name).score_missing
        )
        target = make_target(meta.classes, info.classes, meta.fallbacks, relations, score_missing)
        if task.group == "confidence":
            return ConfidenceHistogram(target)
        if task.images != task.space or not metas[task.images].negatives or theta is None:
            return Scorer(target, conflict=conflict)
        scorer = Scorer(target, conflict=conflict, threshold=theta)
        return WithNegatives(scorer, NegativeScorer(target, theta))
    except UserError as exc:
        raise UserError(f"evaluate {task.group} {task.name}: {exc}") from None


def check_present(metas: dict) -> None:
    """DataError naming the first dataset to evaluate that was recorded as absent (an optional one)."""
    for d in sorted(d for d, meta in metas.items() if meta.source == "absent"):
        raise DataError(
            f"evaluate: {d} was not found when download@{d} ran (optional; README, Real data): put it "
            f"under data.root and run `dvc repro -f download@{d}`, or leave it out of evaluate"
        )


def _examples(scorers: dict, images: str, figure_images: int) -> Examples:
    """What to keep of the first images for the report: figure_images of an unseen set, one of a seen one."""
    own = next((t for t in scorers if t.space == images and t.group in ("unseen", "seen")), None)
    n = 0 if own is None else figure_images if own.group == "unseen" else min(figure_images, 1)
    return Examples(n, own, next((t for t in scorers if t.group == "union"), None))


def evaluate_model(
    model, info, p, shards: Path, multilabels=None, device="cpu", progress: str = ""
) -> tuple[dict, dict, dict]:
    """Score `model` (with its ModelInfo) on every task of params `p` (data.source, evaluate.*).
    multilabels: the relabel table (real data: the merged protocol's relations). progress: the label of
    a progress bar per image set ("" for none). The training datasets' images are scored first: their seen
    splits give the abstention threshold θ (abstain.py) that a test set with negative frames is then
    scored with. Returns ({Task: TaskScore | ReadoutScore}, examples, record): examples = {dataset:
    Examples} for the report's panels; record = {"abstain_threshold", "abstain_coverage"}."""
    left_out = []
    if p.evaluate.leave_one_out:
        left_out = [
            d
            for d in taxonomy.known_datasets()
            if taxonomy.dataset_info(d).role == "train" and d not in info.datasets and (shards / d).is_dir()
        ]
    synthetic = p.data.source == "synthetic"
    tasks = plan_tasks(
        info.datasets, p.evaluate.unseen, p.evaluate.seen, p.evaluate.cross, left_out, union=synthetic
    )
    metas = {d: read_meta(shards / d) for d in {t.images for t in tasks} | {t.space for t in tasks}}
    check_present(metas)
    relations = merge_relations(p.data.source, info.datasets, multilabels)
    order = sorted(dict.fromkeys(t.images for t in tasks), key=lambda d: d not in info.datasets)
    results, examples, counts, theta = {}, {}, None, None
    for images in order:
        if images not in info.datasets and theta is None and counts is not None:
            theta = threshold(counts)  # every training set is scored: θ from their seen splits
        todo = [t for t in tasks if t.images == images]
        todo += [Task("confidence", images, images, images) for t in todo if t.group == "seen"]
        scorers = {}
        for task in todo:
            scorer = _scorer(task, info, metas, relations, synthetic, theta)
            if scorer is not None:
                scorers[task] = (scorer, _ground_truth(task, metas, p.data.source))
        scored, kept = _score_set(model, info, p, shards / images, scorers, device, progress)
        if kept.labels or kept.outside:
            examples[images] = kept
        for task, scorer in scored.items():
            if task.group == "confidence":
                counts = scorer.result() if counts is None else counts + scorer.result()
            else:
                results[task] = scorer.result()
    record = {"abstain_threshold": None if theta is None else round(theta, 4), "abstain_coverage": COVERAGE}
    return {t: results[t] for t in tasks if t in results}, examples, record


def _score_set(model, info, p, shards: Path, scorers: dict, device, progress: str):
    """Score one image set's val split with its scorers; returns (scorers, Examples kept)."""
    from tqdm import tqdm

    dataset = EvalSet(shards, "val", p.evaluate.height)
    bar = tqdm(total=len(dataset), desc=f"{progress}: {shards.name}", disable=not progress, leave=False)

    def batches(loader=make_eval_loader(dataset, p.evaluate.batch_size, p.evaluate.workers)):
        for batch in iter_batches(loader):
            yield batch
            bar.update(len(batch[0]))

    kept = _examples(scorers, shards.name, p.report.figure_images)
    with torch.inference_mode():
        scored = score_images(model, info, batches(), scorers, device, p.evaluate.window, kept)
    bar.close()
    return scored, kept
