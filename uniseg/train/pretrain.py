"""Pretraining the backbone on the synthetic world: the embedded benchmark's stand-in for ImageNet.

The paper's HRNets start from ImageNet weights; this machine cannot download them, and a backbone that
starts from random weights leaves thin and rare classes unlearned within a CPU budget (docs/findings.md).
Two tasks (`pretrain.task`): `presence`, image-level as ImageNet is — multi-label classification of which
world classes a crop contains; and `segmentation`, dense world classes per pixel, a stronger regime that
is the default because the image-level task left the thin classes unlearned within the training budget
(docs/benchmark.md). The images are rendered from the world with a seed no dataset uses and with a
random style and random colours per image; the labels are world classes, not any dataset's label space.
Only the backbone is kept — a backbone file that `model.pretrained` loads as it would load ImageNet
weights.
"""

from __future__ import annotations

import math
import time
from multiprocessing import get_context

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from uniseg.datasets.synthetic.appearance import paint_image, world_colours
from uniseg.datasets.synthetic.world import CELL, DEFAULT_STYLE, WORLD_CLASSES, render_world
from uniseg.metrics import confusion_matrix, iou_per_class
from uniseg.model.inputs import normalise
from uniseg.train.trainlog import TrainLog, poly

SEED_TAG = 0x9E7  # scene seeds [SEED_TAG, seed, k]: disjoint from the datasets' [seed, k]
MIN_PIXELS = int(CELL * CELL)  # a world class is "in" a crop when it covers at least one feature cell
HELD_OUT = 256  # scenes (another seed) on which the presence AP is measured
WEIGHT_DECAY = 1e-4
LOG_EVERY = 100  # iterations per progress line


def random_style(rng: np.random.Generator) -> dict:
    """A style drawn from ranges wider than all the policies' together (ImageNet's variety of looks)."""
    lo = rng.uniform(0.28, 0.45)
    return {
        **DEFAULT_STYLE,
        "tint": rng.uniform(0.8, 1.2, size=3).tolist(),
        "brightness": float(rng.uniform(-0.12, 0.12)),
        "contrast": float(rng.uniform(0.7, 1.25)),
        "noise": float(rng.uniform(0.01, 0.08)),
        "blur": int(rng.integers(0, 2)),
        "fog": float(rng.uniform(0.0, 0.35)),
        "horizon": [lo, lo + rng.uniform(0.04, 0.15)],
        "vehicles": [0, int(rng.integers(2, 8))],
        "people": [0, int(rng.integers(1, 5))],
        "riders": [0, int(rng.integers(1, 4))],
        "animals": [0, int(rng.integers(0, 3))],
        "autorickshaws": [0, int(rng.integers(0, 4))],
        "crosswalk": float(rng.uniform(0, 1)),
        "bike_lane": float(rng.uniform(0, 1)),
    }


def _render_one(job: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    seed, k, height, width = job
    rng = np.random.default_rng([SEED_TAG, seed, k])
    style = random_style(rng)
    world = render_world(rng, height, width, style)
    return paint_image(rng, world, style, world_colours(int(rng.integers(2**31)))), world


def render_set(n: int, seed: int, height: int, width: int, workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """n scenes with random styles: images uint8 [n, H, W, 3], world maps uint8 [n, H, W]. Deterministic."""
    jobs = [(seed, k, height, width) for k in range(n)]
    if workers > 1:
        with get_context("spawn").Pool(workers) as pool:
            out = pool.map(_render_one, jobs, chunksize=16)
    else:
        out = [_render_one(j) for j in jobs]
    return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])


def presence(worlds: torch.Tensor, min_pixels: int) -> torch.Tensor:
    """worlds uint8 [B, h, w] -> float [B, W]: 1 where a world class covers at least `min_pixels`."""
    counts = F.one_hot(worlds.long().flatten(1), len(WORLD_CLASSES)).sum(1)
    return (counts >= min_pixels).float()


def sample_batch(images, worlds, g: torch.Generator, batch: int, crop: int, min_pixels: int):
    """Random square crops (and flips) of random scenes: normalised images [B,3,c,c] and their world maps
    [B, c, c] (uint8)."""
    n, h, w = worlds.shape
    idx = torch.randint(n, (batch,), generator=g)
    ys = torch.randint(h - crop + 1, (batch,), generator=g)
    xs = torch.randint(w - crop + 1, (batch,), generator=g)
    flips = torch.rand(batch, generator=g) < 0.5
    x = torch.stack([images[i, y : y + crop, z : z + crop] for i, y, z in zip(idx, ys, xs, strict=True)])
    m = torch.stack([worlds[i, y : y + crop, z : z + crop] for i, y, z in zip(idx, ys, xs, strict=True)])
    x = torch.where(flips[:, None, None, None], x.flip(2), x)
    m = torch.where(flips[:, None, None], m.flip(2), m)
    return normalise(x.permute(0, 3, 1, 2)), m


class Classifier(nn.Module):
    """The backbone's branches, globally average-pooled and concatenated, then one linear layer."""

    def __init__(self, encoder: nn.Module, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.fc = nn.Linear(sum(encoder.feature_info.channels()), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([b.mean((2, 3)) for b in self.encoder(x)], 1))

    def loss(self, x: torch.Tensor, worlds: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(self(x), presence(worlds, MIN_PIXELS))


class Segmenter(nn.Module):
    """The dense variant (`pretrain.task: segmentation`): the branches upsampled to stride 4, concatenated
    and classified per pixel into world classes — a stronger regime than ImageNet's image labels."""

    def __init__(self, encoder: nn.Module, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Conv2d(sum(encoder.feature_info.channels()), num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = self.encoder(x)
        size = branches[0].shape[-2:]
        up = [branches[0]] + [
            F.interpolate(b, size=size, mode="bilinear", align_corners=False) for b in branches[1:]
        ]
        return F.interpolate(
            self.head(torch.cat(up, 1)), size=x.shape[-2:], mode="bilinear", align_corners=False
        )

    def loss(self, x: torch.Tensor, worlds: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self(x), worlds.long())


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-class AP [W] (NaN for a class with no positive): the mean of precision at each positive."""
    out = torch.full((scores.shape[1],), math.nan)
    for k in range(scores.shape[1]):
        t = targets[:, k][scores[:, k].argsort(descending=True)]
        if t.sum() > 0:
            hits = t.cumsum(0)
            out[k] = float((hits / torch.arange(1, len(t) + 1) * t).sum() / t.sum())
    return out


def pretrain_backbone(
    cfg, height: int, width: int, workers: int = 2, progress=print
) -> tuple[nn.Module, dict]:
    """Train `cfg.backbone` (timm HRNet features) on `cfg.task` in square crops of scenes rendered at
    height x width; cfg: PretrainParams. Returns the encoder and a summary: final loss, the held-out
    scenes' mean and per-class score (percent: presence AP as `map`/`ap`, or world-class IoU as
    `miou`/`iou`), seconds."""
    from uniseg.model.backbones import create_encoder

    torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    images, worlds = render_set(cfg.images, cfg.seed, height, width, workers)
    held_out = render_set(min(HELD_OUT, cfg.images), cfg.seed + 1_000_000, height, width, workers)
    progress(
        f"pretrain: rendered {cfg.images} + {len(held_out[0])} scenes in {time.perf_counter() - start:.0f}s"
    )
    images, worlds = torch.from_numpy(images), torch.from_numpy(worlds)
    crop = min(height, width)
    task = Segmenter if cfg.task == "segmentation" else Classifier
    model = task(create_encoder(cfg.backbone, "none"), len(WORLD_CLASSES))
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, poly(cfg.iters))
    g = torch.Generator().manual_seed(cfg.seed)
    model.train()
    log = TrainLog("pretrain", cfg.iters, cfg.batch_size, LOG_EVERY, bar=False, echo=progress)
    for it in range(1, cfg.iters + 1):
        x, y = sample_batch(images, worlds, g, cfg.batch_size, crop, MIN_PIXELS)
        loss = model.loss(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        log.update(it, loss.item(), scheduler.get_last_lr()[0])
    log.close()
    scores = (
        evaluate_presence(model, held_out, crop)
        if cfg.task == "presence"
        else evaluate_dense(model, held_out, crop)
    )
    named = {
        c: round(100 * float(v), 1) for c, v in zip(WORLD_CLASSES, scores, strict=True) if not math.isnan(v)
    }
    mean, key = round(float(np.mean(list(named.values()))), 1), "map" if cfg.task == "presence" else "miou"
    summary = {"final_loss": round(float(loss.item()), 4), key: mean}
    per_class = "ap" if cfg.task == "presence" else "iou"
    return model.encoder, {**summary, per_class: named, "seconds": round(time.perf_counter() - start)}


def _centre_crops(held_out, crop: int, batch: int = 64):
    """(normalised images [B,3,c,c], world maps [B,c,c]) of the centre crop of every held-out scene."""
    images, worlds = (torch.from_numpy(a) for a in held_out)
    h, w = worlds.shape[1:]
    y0, x0 = (h - crop) // 2, (w - crop) // 2
    for s in range(0, len(images), batch):
        x = images[s : s + batch, y0 : y0 + crop, x0 : x0 + crop]
        yield normalise(x.permute(0, 3, 1, 2)), worlds[s : s + batch, y0 : y0 + crop, x0 : x0 + crop]


@torch.no_grad()
def evaluate_presence(model: Classifier, held_out, crop: int) -> torch.Tensor:
    """Per-class AP of presence on the centre crop of every held-out scene."""
    model.eval()
    scores, targets = [], []
    for x, world in _centre_crops(held_out, crop):
        scores.append(model(x))
        targets.append(presence(world, MIN_PIXELS))
    return average_precision(torch.cat(scores), torch.cat(targets))


@torch.no_grad()
def evaluate_dense(model: Segmenter, held_out, crop: int) -> torch.Tensor:
    """Per-world-class IoU of the dense variant on the centre crop of every held-out scene."""
    model.eval()
    n = len(WORLD_CLASSES)
    conf = torch.zeros(n, n, dtype=torch.float64)
    for x, world in _centre_crops(held_out, crop):
        conf += confusion_matrix(model(x).argmax(1), world, n)
    return iou_per_class(conf)
