"""`make bench`: performance ratios measured side by side in one run -> reports/bench.json.

Ratios (not absolute times) are the goals, because the machines are shared and noisy: each pair is
timed interleaved, several rounds, and the median of each is compared.

- loss.<name>_over_ce: forward + backward of each loss vs softmax CE on the same logits (70 classes,
  a batch at the default crop size, a realistic mix of datasets). Goal: nullbce and crbce <= 1.3.
- mine.over_inference: the mining pass (features, cosines, float64 accumulation) vs plain inference
  (logits at full resolution) on the same images. Goal: <= 1.15.
- metrics.confusion_over_reference: uniseg's confusion matrix vs sklearn-style (bincount per image in
  numpy) on the same predictions.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch


def _median_time(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _interleaved(fns: dict, rounds: int, warmup: int = 2) -> dict[str, float]:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_losses(batch: int, crop: tuple[int, int], rounds: int) -> dict:
    from uniseg import taxonomy
    from uniseg.losses import build_loss, dataset_masks, relation_targets

    datasets = ["cityscapes", "bdd", "idd", "mapillary"]
    spaces = {d: taxonomy.label_space(d) for d in datasets}
    union = taxonomy.union(spaces.values())
    k = len(union)
    masks = dataset_masks(union, list(spaces.values()))
    relations = [
        ("mapillary", "bicyclist", "rider"),
        ("mapillary", "motorcyclist", "rider"),
        ("mapillary", "lane marking - general", "road"),
        ("mapillary", "crosswalk - plain", "road"),
        ("mapillary", "curb", "sidewalk"),
        ("mapillary", "ground animal", "person"),
        ("mapillary", "caravan", "car"),
        ("mapillary", "trailer", "truck"),
    ]
    targets = relation_targets(union, spaces, relations)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(batch, k, *crop, generator=g)
    ids = torch.arange(batch) % len(datasets)
    labels = torch.empty(batch, *crop, dtype=torch.long)
    for b in range(batch):
        own = masks[ids[b]].nonzero().flatten()
        labels[b] = own[torch.randint(len(own), crop, generator=g)]
    labels[:, :4] = 255

    def run(name):
        fn = build_loss(
            name, masks, targets if name == "crbce" else None, offset=-4.2 if name != "ce" else 0.0
        )

        def step():
            x = logits.clone().requires_grad_(True)
            total, count = fn(x, labels, ids)
            (total / count).backward()

        return step

    times = _interleaved({n: run(n) for n in ("ce", "bce", "nullbce", "crbce")}, rounds)
    out = {f"loss.{n}_over_ce": round(times[n] / times["ce"], 3) for n in ("bce", "nullbce", "crbce")}
    out["loss.ce_seconds"] = round(times["ce"], 4)
    out["loss.setting"] = (
        f"{batch}x{k}x{crop[0]}x{crop[1]} logits, fp32, CPU threads {torch.get_num_threads()}"
    )
    return out


def bench_mining(batch: int, size: tuple[int, int], rounds: int) -> dict:
    from uniseg.models import build_model
    from uniseg.relations import mine_similarities

    torch.manual_seed(0)
    k = 70
    model = build_model("hrnet_w18_small", "cosine", k).eval()
    images = torch.randn(batch, 3, *size)
    labels = torch.randint(0, k, (batch, *size))

    @torch.no_grad()
    def inference():
        model(images).argmax(1)

    def mining():
        mine_similarities(model, [(images, labels)], k)

    times = _interleaved({"inference": inference, "mining": mining}, rounds)
    return {
        "mine.over_inference": round(times["mining"] / times["inference"], 3),
        "mine.inference_seconds": round(times["inference"], 4),
    }


def bench_confusion(rounds: int) -> dict:
    from uniseg.metrics import confusion_matrix

    g = torch.Generator().manual_seed(0)
    n = 19
    pred = torch.randint(0, n, (4, 512, 1024), generator=g)
    target = torch.randint(0, n + 1, (4, 512, 1024), generator=g)
    target[target == n] = 255
    p_np, t_np = pred.numpy(), target.numpy()

    def reference():
        conf = np.zeros((n, n), dtype=np.int64)
        for b in range(p_np.shape[0]):
            keep = t_np[b] < n
            conf += np.bincount(t_np[b][keep] * n + p_np[b][keep], minlength=n * n).reshape(n, n)
        return conf

    assert np.array_equal(confusion_matrix(pred, target, n).numpy().astype(np.int64), reference())
    times = _interleaved(
        {"uniseg": lambda: confusion_matrix(pred, target, n), "reference": reference}, rounds
    )
    return {"metrics.confusion_over_reference": round(times["uniseg"] / times["reference"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/bench.json"))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--crop", type=int, nargs=2, default=[128, 256], help="loss benchmark crop (default profile)"
    )
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    from uniseg.fsio import write_json

    result = {}
    print("losses ...", flush=True)
    result.update(bench_losses(args.batch, tuple(args.crop), args.rounds))
    print("mining ...", flush=True)
    result.update(bench_mining(4, (128, 256), args.rounds))
    print("confusion matrix ...", flush=True)
    result.update(bench_confusion(args.rounds))
    write_json(args.out, result)
    for key, value in result.items():
        print(f"{key:<40} {value}")


if __name__ == "__main__":
    main()
