"""`make bench`: performance ratios measured side by side in one run -> reports/bench.json.

Ratios (not absolute times) are the goals, because the machines are shared and noisy: each pair is
timed interleaved, several rounds, and the median of each is compared.

- loss.<name>_over_ce: forward + backward of each loss vs softmax CE on the same logits (70 classes,
  a batch at the default crop size, a realistic mix of datasets). Goal: nullbce and crbce <= 1.3.
- mine.over_inference: the mining pass (features, cosines, float64 accumulation) vs plain inference
  (logits at full resolution) on the same images. Goal: <= 1.15.
- metrics.confusion_over_reference: uniseg's confusion matrix vs sklearn-style (bincount per image in
  numpy) on the same predictions.
- shard.speedup_2_over_1: shard writing with 2 processes vs 1 (goal >= 1.6 on 2 cores);
  shard.speedup_vs_naive: 2-process shard writing vs a naive single-process loop that resizes into
  loose files (goal >= 1.5); shard.images_per_s_per_core: 2-process throughput per process (raw);
  shard.read_last_over_first: reading the last row of a shard vs the first (O(1) access: about 1).
- loader.stall_fraction: share of a training loop's time spent waiting for the next batch with the
  default settings (goal <= 0.10 on CPU).
- Training on the CPU in float32 and bf16 (benchmarks/cpu_train.py): train.cpu_step_bf16_speedup,
  train.cpu_run_bf16_speedup (a fresh short run of the engine; goal >= 1.4), train.cpu_run_best (bf16 with 2, 1 or 0
  loader workers).
- Training steps in fresh processes (benchmarks/cpu_processes.py): train.cpu_alloc_speedup, page faults
  and kernel seconds per step with glibc's allocator defaults against `tune_cpu`'s freed memory kept;
  train.cpu_jobs_throughput, one single-threaded process per core running together against one process
  on every core (`make seeds JOBS=2`).
- At the paper's resolution (benchmarks/real_scale.py): loader.images_per_s_per_worker,
  loader.speedup_vs_reference, loader.variants, loader.shard_kib_per_image, loader.workers_per_gpu,
  mine.peak_mib_1080p and evaluate.peak_mib_1080p, train.overhead_vs_bare_loop.
- Inference at 1080p, PyTorch against ONNX Runtime (benchmarks/onnx_speed.py): onnx.images_per_s_torch_fp32,
  onnx.images_per_s_torch_bf16, onnx.images_per_s_ort, onnx.ort_over_torch_fp32, onnx.max_abs_diff,
  onnx.setting.
- What each architecture costs (benchmarks/model_costs.py): arch.<backbone>.params_m, .encoder_params_m,
  .gflops_713, .peak_mib_1080p, .seconds_1080p for SegFormer (mit_b0, mit_b4) and HRNet (hrnet_w18,
  hrnet_w48); arch.setting.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch


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
    from uniseg.model.losses import build_loss, dataset_masks, relation_targets

    datasets = ["cityscapes", "bdd", "idd", "mapillary"]
    spaces = {d: taxonomy.label_space(d) for d in datasets}
    union = taxonomy.union(spaces.values())
    k = len(union)
    masks = dataset_masks(union, list(spaces.values()))
    relations = [("mapillary", a, b) for a, b, _ in taxonomy.paper_relations()]  # Table A-1
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
    from uniseg.model.segmodel import build_model
    from uniseg.relations.mining import mine_similarities

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


def _raw_dataset(root: Path, n: int, size: tuple[int, int]) -> Path:
    from PIL import Image

    from uniseg.datasets.layout import DatasetMeta, write_meta

    rng = np.random.default_rng(0)
    folder = root / "train"
    folder.mkdir(parents=True)
    for k in range(n):
        base = rng.integers(0, 255, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
        Image.fromarray(base).resize(size, Image.Resampling.BILINEAR).save(
            folder / f"s{k:04d}.jpg", quality=90
        )
        label = rng.integers(0, 19, (size[1] // 16, size[0] // 16), dtype=np.uint8)
        Image.fromarray(label).resize(size, Image.Resampling.NEAREST).save(folder / f"s{k:04d}.label.png")
    write_meta(root, DatasetMeta("bench", "real", [f"c{i}" for i in range(19)], {"train": n}))
    return root


def bench_shards(tmp: Path, rounds: int, images: int = 96) -> dict:
    from PIL import Image

    from uniseg.datasets.layout import list_samples
    from uniseg.shards import ShardReader
    from uniseg.shards.packing import write_shards

    raw = _raw_dataset(tmp / "raw", images, (1280, 720))

    def naive():
        out = tmp / "naive"
        out.mkdir(exist_ok=True)
        for s in list_samples(raw, "train"):
            img = Image.open(s.image).convert("RGB")
            lab = Image.open(s.label)
            size = (round(img.width * 360 / img.height), 360)
            img.resize(size, Image.Resampling.BILINEAR).save(out / f"{s.key}.jpg", quality=95)
            lab.resize(size, Image.Resampling.NEAREST).save(out / f"{s.key}.png")

    times = _interleaved(
        {
            "one": lambda: write_shards(raw, tmp / "s1", 360, 256, workers=1, progress=False),
            "two": lambda: write_shards(raw, tmp / "s2", 360, 256, workers=2, progress=False),
            "naive": naive,
        },
        max(3, rounds // 2),
        warmup=1,
    )
    reader = ShardReader(tmp / "s2")
    first, last = 0, len(reader) - 1
    reads = _interleaved(
        {"first": lambda: reader.read_raw(first), "last": lambda: reader.read_raw(last)}, 200, warmup=5
    )
    return {
        "shard.speedup_2_over_1": round(times["one"] / times["two"], 3),
        "shard.speedup_vs_naive": round(times["naive"] / times["two"], 3),
        "shard.images_per_s_per_core": round(images / times["two"] / 2, 2),
        "shard.read_last_over_first": round(reads["last"] / reads["first"], 3),
        "shard.setting": f"{images} JPEG images 1280x720 -> shorter side 360",
    }


def bench_loader(tmp: Path, iterations: int = 30) -> dict:
    """Default-profile training steps; time spent waiting in next(loader) over the total."""
    from uniseg.datasets.synthetic import generate_dataset
    from uniseg.model.inputs import normalise_batch
    from uniseg.model.losses import build_loss, dataset_masks, normalise_loss
    from uniseg.model.segmodel import build_model
    from uniseg.params import load_params
    from uniseg.shards.packing import write_shards
    from uniseg.taxonomy import union
    from uniseg.train.loader import TrainSet, make_train_loader

    p = load_params()
    dirs, spaces = [], []
    for name in p.train.datasets:
        meta = generate_dataset(name, tmp / "raw" / name, p.synthetic)
        write_shards(tmp / "raw" / name, tmp / "shards" / name, p.shard.short_side, progress=False)
        dirs.append(tmp / "shards" / name)
        spaces.append(meta.classes)
    classes = union(spaces)
    data = TrainSet(dirs, classes, tuple(p.train.crop), tuple(p.train.scale))
    loader, sampler = make_train_loader(data, p.train.batch_size, p.train.workers, 0)
    model = build_model(p.model.backbone, p.model.classifier, len(classes), p.model.t)
    loss_fn = build_loss("nullbce", dataset_masks(classes, spaces))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    waited, total, done = 0.0, 0.0, 0
    sampler.set_epoch(0)
    it = iter(loader)
    next(it)  # workers started
    start = time.perf_counter()
    while done < iterations:
        t0 = time.perf_counter()
        try:
            images, labels, ids = next(it)
        except StopIteration:
            sampler.set_epoch(done)
            it = iter(loader)
            continue
        waited += time.perf_counter() - t0
        loss = normalise_loss(*loss_fn(model(normalise_batch(images)), labels.long(), ids))
        opt.zero_grad()
        loss.backward()
        opt.step()
        done += 1
    total = time.perf_counter() - start
    return {
        "loader.stall_fraction": round(waited / total, 3),
        "loader.setting": f"default profile, {iterations} iterations, {p.train.workers} workers",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/bench.json"))
    parser.add_argument("--rounds", type=int, default=11)
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
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print("shards ...", flush=True)
        result.update(bench_shards(Path(tmp) / "shards", args.rounds))
        print("loader ...", flush=True)
        result.update(bench_loader(Path(tmp) / "loader"))
        from benchmarks.cpu_train import bench_cpu_training
        from benchmarks.real_scale import run_all

        print("CPU training, float32 and bf16 ...", flush=True)
        result.update(bench_cpu_training(Path(tmp) / "cpu_train"))
        from benchmarks.cpu_processes import bench_cpu_allocator, bench_cpu_jobs

        print(
            "CPU training step: glibc's allocator against tune_cpu's; one arm or two at once ...", flush=True
        )
        result.update(bench_cpu_allocator(Path(tmp) / "cpu_train"))
        result.update(bench_cpu_jobs(Path(tmp) / "cpu_train"))
        result.update(run_all(Path(tmp)))
        from benchmarks.onnx_speed import bench_onnx_speed

        print("inference at 1080p: PyTorch float32, bf16 and ONNX Runtime ...", flush=True)
        result.update(bench_onnx_speed(Path(tmp) / "onnx"))
    from benchmarks.model_costs import bench_model_costs

    print("architectures: parameters, FLOPs, 1080p memory and time (SegFormer, HRNet) ...", flush=True)
    result.update(bench_model_costs())
    write_json(args.out, result)
    for key, value in result.items():
        print(f"{key:<40} {value}")


if __name__ == "__main__":
    main()
