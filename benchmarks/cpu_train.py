"""Training on the CPU in float32 and in bf16 (`train.amp_cpu`), side by side in one run, and the loader
workers against compute on this machine's cores.

- train.cpu_step_bf16_speedup: one training step (`engine.train_step`: forward, loss, backward, SGD) of
  the default profile's model on its batch (8 crops of 128x256), float32 over bf16 + channels_last;
  median of interleaved rounds.
- train.cpu_run_bf16_speedup: `engine.train_model`, a fresh run of `iters` iterations of the default
  profile (2 loader workers, logging, a checkpoint), float32 over bf16; the loop's own time, rounds
  interleaved, medians. A whole short arm's training: what a `make seeds` run spends most of its time in.
- train.cpu_run_seconds: medians of that run in float32 (the profile's train.workers) and in bf16 with
  train.workers 2, 1 and 0 (loader processes share the two cores with the training process);
  train.cpu_run_best and its speedup over float32: the setting to train in here.
Where the CPU has no bf16 units (`cpu_has_bf16`), the bf16 figures are not measured and say so.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import torch


def _with(p, **train):
    return p.model_copy(update={"train": p.train.model_copy(update=train)})


def make_step(p, shards: Path, bf16: bool):
    """One training step (`engine.train_step`) of params `p`'s model on a fixed batch of its size, in
    bf16 + channels_last or float32; returns it as a callable."""
    from uniseg.model.losses import build_loss, dataset_masks, prior_offset
    from uniseg.model.segmodel import build_model
    from uniseg.train.engine import TrainJob, train_step

    job = TrainJob.from_params(p, shards, shards.parent / "unused.pt")
    k, (h, w), b = len(job.union), p.train.crop, p.train.batch_size
    g = torch.Generator().manual_seed(0)
    batch = (
        torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=g),
        torch.randint(0, k, (b, h, w), dtype=torch.uint8, generator=g),
        torch.arange(b) % len(job.spaces),
    )
    masks = dataset_masks(job.union, list(job.spaces.values()))
    loss_fn = build_loss(p.loss, masks, None, prior_offset(p.model.classifier, p.loss, k))
    torch.manual_seed(0)
    model = build_model(p.model.backbone, p.model.classifier, k, p.model.t)
    if bf16:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0)
    return lambda: train_step(model, loss_fn, opt, sched, batch, torch.device("cpu"), bf16, bf16)


def step_seconds(p, shards: Path, rounds: int) -> dict[str, float]:
    """Median seconds of one training step in float32 and in bf16, on the same batch, interleaved."""
    from benchmarks.run import _interleaved

    steps = {name: make_step(p, shards, bf16) for name, bf16 in (("float32", False), ("bf16", True))}
    return _interleaved(steps, rounds)  # two warm-up calls each: oneDNN builds its kernels on first use


def bench_cpu_training(tmp: Path, rounds: int = 7, iters: int = 60, run_rounds: int = 3) -> dict:
    """The figures above (module docstring), measured side by side in one call."""
    from benchmarks.real_scale import default_corpus, engine_seconds
    from uniseg.model.segmodel import cpu_has_bf16, tune_cpu

    tune_cpu()  # as the engine does
    p = default_corpus(tmp)
    shards = tmp / "shards"
    setting = (
        f"default profile ({p.model.backbone}, {p.model.classifier} head, {p.loss}, batch {p.train.batch_size}, "
        f"crops {p.train.crop[0]}x{p.train.crop[1]}), {torch.get_num_threads()} threads, "
        f"CPU {torch.backends.cpu.get_cpu_capability()}; runs of {iters} iterations, {run_rounds} interleaved rounds"
    )
    if not cpu_has_bf16():
        return {
            "train.cpu_bf16": "not measured: this CPU has no bf16 units (AMX, AVX-512 BF16)",
            "train.cpu_setting": setting,
        }
    step = step_seconds(p, shards, rounds)
    # float32 as the default profile runs (its train.workers), bf16 with 2, 1 and 0 loader workers
    configs = {"float32": dict(amp_cpu=False)} | {
        f"bf16_w{n}": dict(amp_cpu=True, workers=n) for n in (2, 1, 0)
    }
    runs = {name: [] for name in configs}
    for r in range(run_rounds):
        for name, train in configs.items():
            runs[name].append(engine_seconds(_with(p, **train), shards, tmp / f"run-{name}-{r}", iters))
    run = {k: statistics.median(v) for k, v in runs.items()}
    best = min((k for k in run if k.startswith("bf16")), key=run.get)
    return {
        "train.cpu_step_seconds": {k: round(v, 4) for k, v in step.items()},
        "train.cpu_step_bf16_speedup": round(step["float32"] / step["bf16"], 3),
        "train.cpu_run_seconds": {k: round(v, 1) for k, v in run.items()},
        "train.cpu_run_bf16_speedup": round(run["float32"] / run["bf16_w2"], 3),
        "train.cpu_run_bf16_speedup_range": [
            round(min(runs["float32"]) / max(runs["bf16_w2"]), 3),
            round(max(runs["float32"]) / min(runs["bf16_w2"]), 3),
        ],
        "train.cpu_run_best": best,
        "train.cpu_run_best_speedup": round(run["float32"] / run[best], 3),
        "train.cpu_setting": setting,
    }


if __name__ == "__main__":
    import json
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(bench_cpu_training(Path(tmp), *map(int, sys.argv[1:])), indent=1))
