"""Confusion matrix, IoU and mIoU.

Hand-written on purpose: one bincount over `target * n + pred` is the whole accumulation (numpy's on
CPU, torch's on GPU; `make bench` compares it with a per-image numpy reference), and it accumulates in
float64 so that billions of pixels (1080p evaluation) stay exact.

mIoU is the mean IoU over the evaluated classes that occur in the ground truth or in the prediction
(a class that is in neither has IoU 0/0 and is left out); `count` reports how many classes that was.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

# Pixels counted per np.bincount on CPU: the temporaries stay in cache (one pass over a whole batch
# was 1.9x slower).
CONFUSION_CHUNK = 1 << 17


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, n: int) -> torch.Tensor:
    """float64 [n, n], rows = ground truth, columns = prediction. Pixels whose target is outside
    [0, n) (ignore, excluded classes) are not counted; pred must lie in [0, n).

    On CPU the counting runs in numpy (`np.bincount` is several times faster than `torch.bincount`
    there, `make bench`: metrics.confusion_over_reference); on GPU in torch, on the device."""
    if target.device.type == "cpu":
        t = target.reshape(-1).numpy()
        p = pred.reshape(-1).numpy()
        counts = np.zeros(n * n, dtype=np.int64)
        for start in range(0, t.size, CONFUSION_CHUNK):
            tc, pc = t[start : start + CONFUSION_CHUNK], p[start : start + CONFUSION_CHUNK]
            keep = tc < n  # labels are unsigned (uint8) or non-negative class indices
            if tc.dtype.kind == "i":
                keep &= tc >= 0
            idx = tc[keep].astype(np.int64, copy=False) * n + pc[keep]
            counts += np.bincount(idx, minlength=n * n)
        return torch.from_numpy(counts.reshape(n, n).astype(np.float64))
    target = target.reshape(-1).long()
    pred = pred.reshape(-1).long()
    keep = (target >= 0) & (target < n)
    idx = target[keep] * n + pred[keep]
    return torch.bincount(idx, minlength=n * n).reshape(n, n).to(torch.float64)


def all_reduce_(conf: torch.Tensor) -> torch.Tensor:
    """Sum a confusion matrix over DDP processes (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(conf)
    return conf


def iou_per_class(conf: torch.Tensor) -> torch.Tensor:
    """float64 [n]: IoU of each class; NaN where the class is in neither ground truth nor prediction."""
    inter = conf.diag()
    union = conf.sum(0) + conf.sum(1) - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.full_like(inter, float("nan")))


def mean_iou(conf: torch.Tensor, classes: list[int] | None = None) -> tuple[float, int]:
    """(mIoU in percent, number of classes averaged) over `classes` (default: all) that occur."""
    iou = iou_per_class(conf)
    if classes is not None:
        iou = iou[classes]
    present = ~torch.isnan(iou)
    count = int(present.sum())
    return (100.0 * float(iou[present].mean()) if count else float("nan")), count


def perfected_miou(conf: torch.Tensor, rows: list[int]) -> float:
    """mIoU (percent) of `conf` had every ground-truth pixel of the classes `rows` been predicted right
    (their rows moved onto the diagonal; nothing else changes): with mean_iou(conf), an upper bound for
    what any change confined to those classes' pixels can add."""
    perfect = conf.clone()
    for r in rows:
        total = perfect[r].sum()
        perfect[r] = 0
        perfect[r, r] = total
    return mean_iou(perfect)[0]
