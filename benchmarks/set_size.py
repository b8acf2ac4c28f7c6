"""How many test images the embedded benchmark needs: the test-set sampling error of a paired difference.

For two models evaluated on the same images (e.g. CE and Null BCE of one seed), the unseen mean mIoU of
each, and their difference, vary with the draw of test images. This bootstraps the images of each
unseen set (per-image confusion matrices, resampled with replacement, the dataset's mIoU recomputed
from the summed confusion) and reports the standard error of the unseen mean and of the paired
difference at the current size n, and the size at which the difference's standard error falls to a
target (SE scales as 1/sqrt(n)).

    python -m benchmarks.set_size --model-a models/base.pt --model-b models/crbce.pt
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from uniseg.evaluate.protocols import make_target, model_probs, predict_labels, upsample
from uniseg.metrics import confusion_matrix
from uniseg.model.evalset import EvalSet
from uniseg.model.segmodel import load_model_file


def per_image_confusions(model_path: Path, shards: Path, dataset: str, height: int) -> np.ndarray:
    """[n, m, m] restricted-protocol confusion matrix of every val image of `dataset`."""
    model, info = load_model_file(model_path)
    data = EvalSet(shards / dataset, "val", height)
    target = make_target(data.classes, info.classes, data.reader.meta.fallbacks)
    out = []
    with torch.inference_mode():
        for i in range(len(data)):
            image, label, _, _ = data[i]
            probs = upsample(model_probs(model, image[None], info), tuple(label.shape))
            gt = target.lut[label.long()]
            out.append(confusion_matrix(predict_labels(probs, target), gt, len(target.channels)).numpy())
    return np.stack(out)


def miou(conf: np.ndarray) -> float:
    """mIoU (%) over the classes present in ground truth or prediction; conf [..., m, m] summed."""
    inter = np.diagonal(conf, axis1=-2, axis2=-1)
    union = conf.sum(-1) + conf.sum(-2) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, np.nan)
    return 100 * np.nanmean(iou, axis=-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-a", type=Path, default=Path("models/base.pt"))
    parser.add_argument("--model-b", type=Path, default=Path("models/crbce.pt"))
    parser.add_argument("--shards", type=Path, default=Path("data/shards"))
    parser.add_argument("--datasets", nargs="+", default=["kitti", "wilddash", "camvid"])
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--target-se", type=float, default=0.25, help="wanted SE of the paired difference")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("reports/set_size.json"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    conf = {
        (m, d): per_image_confusions(p, args.shards, d, args.height)
        for m, p in (("a", args.model_a), ("b", args.model_b))
        for d in args.datasets
    }
    n = min(len(conf[("a", d)]) for d in args.datasets)
    draws = {
        d: rng.integers(0, len(conf[("a", d)]), size=(args.resamples, len(conf[("a", d)])))
        for d in args.datasets
    }
    means = {}
    for m in ("a", "b"):
        per_set = [miou(conf[(m, d)][draws[d]].sum(1)) for d in args.datasets]  # [resamples] each
        means[m] = np.mean(per_set, axis=0)
    se_a, se_b, se_diff = (float(np.std(v)) for v in (means["a"], means["b"], means["b"] - means["a"]))
    needed = math.ceil(n * (se_diff / args.target_se) ** 2)
    result = {
        "images_per_set": n,
        "se_unseen_mean_a": round(se_a, 3),
        "se_unseen_mean_b": round(se_b, 3),
        "se_paired_difference": round(se_diff, 3),
        "target_se_paired_difference": args.target_se,
        "images_needed": needed,
        "per_image_miou_std": {d: round(float(np.nanstd(miou(conf[("a", d)]))), 1) for d in args.datasets},
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
