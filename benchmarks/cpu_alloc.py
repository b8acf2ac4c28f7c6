"""Training steps with glibc's default allocator settings against `segmodel.tune_cpu`'s (freed memory
kept in the heap for the next step), each in a fresh process — mallopt cannot be undone inside one —
in interleaved rounds, medians:

- train.cpu_alloc_step_seconds: {"glibc", "tuned"}: seconds per training step (`engine.train_step`, the
  default profile's model and batch; bf16 + channels_last where the CPU has bf16 units, as the ladder
  trains, else float32), both flushing denormals;
- train.cpu_alloc_speedup: glibc's over tuned;
- train.cpu_alloc_faults_per_step and train.cpu_alloc_system_seconds_per_step: {"glibc", "tuned"}: the
  minor page faults and the kernel's CPU seconds per step.
Where the C library has no mallopt (not glibc) there is nothing to compare, and the result says so.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

MODES = ("glibc", "tuned")


def _child(tmp: Path, mode: str, steps: int) -> dict:
    """In this (fresh) process: `steps` timed training steps after three warm-up ones."""
    import resource
    import time

    import torch

    from benchmarks.cpu_train import make_step
    from benchmarks.real_scale import default_corpus
    from uniseg.model import segmodel

    if mode == "glibc":
        segmodel._libc = lambda: None  # tune_cpu then only flushes denormals
    segmodel.tune_cpu()
    p = default_corpus(tmp)
    step = make_step(p, tmp / "shards", segmodel.cpu_has_bf16())
    for _ in range(3):
        step()
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        step()
    seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds": seconds / steps,
        "faults": (after.ru_minflt - before.ru_minflt) / steps,
        "system": (after.ru_stime - before.ru_stime) / steps,
        "precision": "bf16" if segmodel.cpu_has_bf16() else "float32",
        "threads": torch.get_num_threads(),
    }


def bench_cpu_allocator(tmp: Path, rounds: int = 3, steps: int = 20) -> dict:
    """The figures above (module docstring), measured side by side in one call."""
    from benchmarks.real_scale import default_corpus
    from uniseg.model.segmodel import _libc

    if _libc() is None:
        return {"train.cpu_alloc": "not measured: the C library has no mallopt (not glibc)"}
    default_corpus(tmp)  # rendered once, here; the children find it
    runs = {mode: [] for mode in MODES}
    for _ in range(rounds):
        for mode in MODES:
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.cpu_alloc", str(tmp), mode, str(steps)],
                capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1],
            )  # fmt: skip
            runs[mode].append(json.loads(out.stdout.splitlines()[-1]))

    def median(key: str, digits: int) -> dict:
        return {m: round(statistics.median(r[key] for r in runs[m]), digits) for m in MODES}

    seconds = median("seconds", 4)
    ratios = [g["seconds"] / t["seconds"] for g, t in zip(runs["glibc"], runs["tuned"], strict=True)]
    first = runs["tuned"][0]
    return {
        "train.cpu_alloc_step_seconds": seconds,
        "train.cpu_alloc_speedup": round(seconds["glibc"] / seconds["tuned"], 3),
        "train.cpu_alloc_speedup_rounds": [round(min(ratios), 3), round(max(ratios), 3)],
        "train.cpu_alloc_faults_per_step": median("faults", 0),
        "train.cpu_alloc_system_seconds_per_step": median("system", 4),
        "train.cpu_alloc_setting": f"default profile's training step, {first['precision']}, {first['threads']} "
        f"threads; {steps} steps after 3 warm-up ones per fresh process, {rounds} interleaved rounds, medians",
    }


if __name__ == "__main__":
    tmp, mode, steps = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    print(json.dumps(_child(tmp, mode, steps)))
