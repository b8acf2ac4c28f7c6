"""Evaluating a model: which (images, label space) pairs to score — unseen test sets, seen val splits,
each training dataset in every other one's label space (cross), and, where the data source reads it, each
seen val split in the full union (readout.py) — with which ground truth, and the example predictions the
report shows. What the data source offers (cross ground truth, merged relations, readout, headroom) is
asked of its EvalSource (sources.py); the protocols themselves are in protocols.py; the files the results
go to in scores.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from uniseg import taxonomy
from uniseg.datasets.layout import read_meta
from uniseg.errors import DataError, UserError
from uniseg.evaluate.abstain import COVERAGE, ConfidenceHistogram, NegativeScorer, WithNegatives, threshold
from uniseg.evaluate.protocols import ScoreMaps, Scorer, make_target
from uniseg.evaluate.readout import ReadoutScorer, outside_top1
from uniseg.evaluate.sources import EvalSource, GroundTruth, eval_source
from uniseg.model.evalset import EvalSet, iter_batches, make_eval_loader
from uniseg.scores import cross_name

# The key of a seen val split's confidence histogram among its image set's scorers: θ's input, no result.
CONFIDENCE = "confidence"


def own_labels(labels: torch.Tensor, worlds: list, keys=None) -> torch.Tensor:
    return labels


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
    readout of each seen val split (where the source reads it: EvalSource.reads_union)."""
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
    from uniseg.model.segmodel import tune_cpu

    tune_cpu()
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


def _ground_truth(task: Task, metas: dict, source: EvalSource, theta: float | None) -> GroundTruth:
    if task.group == "union":
        return source.readout_truth
    if task.images == task.space:
        # Negative frames are a dataset's metadata, on either source: the scorer learns which images they
        # are. Without θ (no seen split was scored) there is no abstention: the set is scored as any other
        # (its negative frames' labels are void) and the record says θ is None.
        negatives = set(metas[task.images].negatives)
        if not negatives or theta is None:
            return own_labels
        return lambda labels, worlds, keys: (labels, torch.tensor([k in negatives for k in keys]))
    return source.cross_truth(task.space, metas[task.images].classes, metas[task.space].classes)


def _scorer(task: Task, info, metas: dict, relations, source: EvalSource, theta: float | None):
    """The scorer of one task: a Scorer in the task's label space (with the headroom of the classes the
    source says a true relation can move, on an unseen set; with abstention and its negative frames, on a
    set that has them), or the union readout's ReadoutScorer (None when there is nothing to read)."""
    meta = metas[task.space]
    try:
        if task.group == "union":
            readout = source.readout(task.images, meta.classes, info.classes, info.datasets)
            return None if readout is None else ReadoutScorer(readout, info.sigmoid)
        conflict = source.headroom_classes(info.datasets, task.space) if task.group == "unseen" else None
        score_missing = (
            meta.name in taxonomy.known_datasets() and taxonomy.dataset_info(meta.name).score_missing
        )
        target = make_target(meta.classes, info.classes, meta.fallbacks, relations, score_missing)
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
    a progress bar per image set ("" for none). The training datasets' images are scored first: the
    confidence histograms of their seen splits give the abstention threshold θ (abstain.py) that a test
    set with negative frames is then scored with. Returns ({Task: TaskScore | ReadoutScore}, examples,
    record): examples = {dataset: Examples} for the report's panels; record = {"abstain_threshold",
    "abstain_coverage"}."""
    left_out = []
    if p.evaluate.leave_one_out:
        left_out = [
            d
            for d in taxonomy.known_datasets()
            if taxonomy.dataset_info(d).role == "train" and d not in info.datasets and (shards / d).is_dir()
        ]
    source = eval_source(p.data.source, multilabels)
    tasks = plan_tasks(
        info.datasets, p.evaluate.unseen, p.evaluate.seen, p.evaluate.cross, left_out, source.reads_union
    )
    metas = {d: read_meta(shards / d) for d in {t.images for t in tasks} | {t.space for t in tasks}}
    check_present(metas)
    relations = source.relations(info.datasets)
    order = sorted(dict.fromkeys(t.images for t in tasks), key=lambda d: d not in info.datasets)
    results, examples, counts, theta = {}, {}, None, None
    for images in order:
        if images not in info.datasets and theta is None and counts is not None:
            theta = threshold(counts)  # every training set is scored: θ from their seen splits
        scorers = {}
        for task in (t for t in tasks if t.images == images):
            scorer = _scorer(task, info, metas, relations, source, theta)
            if scorer is not None:
                scorers[task] = (scorer, _ground_truth(task, metas, source, theta))
        # θ's input: the seen split's top probabilities over its own label space, on its own labels.
        seen = next(((s, gt) for t, (s, gt) in scorers.items() if t.group == "seen"), None)
        histogram = {} if seen is None else {CONFIDENCE: (ConfidenceHistogram(seen[0].target), seen[1])}
        scored, kept = _score_set(model, info, p, shards / images, scorers, histogram, device, progress)
        if kept.labels or kept.outside:
            examples[images] = kept
        for key, scorer in scored.items():
            if key == CONFIDENCE:
                counts = scorer.result() if counts is None else counts + scorer.result()
            else:
                results[key] = scorer.result()
    record = {"abstain_threshold": None if theta is None else round(theta, 4), "abstain_coverage": COVERAGE}
    return {t: results[t] for t in tasks if t in results}, examples, record


def _score_set(model, info, p, shards: Path, scorers: dict, histogram: dict, device, progress: str):
    """Score one image set's val split with its tasks' scorers and θ's histogram ({} or {CONFIDENCE:
    (ConfidenceHistogram, GroundTruth)}, after them); returns (every scorer by key, Examples kept)."""
    from tqdm import tqdm

    dataset = EvalSet(shards, "val", p.evaluate.height)
    bar = tqdm(total=len(dataset), desc=f"{progress}: {shards.name}", disable=not progress, leave=False)

    def batches(loader=make_eval_loader(dataset, p.evaluate.batch_size, p.evaluate.workers)):
        for batch in iter_batches(loader):
            yield batch
            bar.update(len(batch[0]))

    kept = _examples(scorers, shards.name, p.report.figure_images)
    with torch.inference_mode():
        scored = score_images(model, info, batches(), scorers | histogram, device, p.evaluate.window, kept)
    bar.close()
    return scored, kept
