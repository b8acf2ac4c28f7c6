"""Training steps in fresh processes, side by side in one run (interleaved rounds, medians): what a
process-wide setting does to the default profile's training step (`engine.train_step`, its model and
batch; bf16 + channels_last where the CPU has bf16 units, as the ladder trains, else float32).

The allocator — glibc's defaults against `segmodel.tune_cpu`'s freed memory kept in the heap (mallopt
cannot be undone inside a process, hence one process per setting), both flushing denormals:
- train.cpu_alloc_step_seconds: {"glibc", "tuned"}: seconds per step; train.cpu_alloc_speedup: glibc's
  over tuned;
- train.cpu_alloc_faults_per_step and train.cpu_alloc_system_seconds_per_step: {"glibc", "tuned"}: the
  minor page faults and the kernel's CPU seconds per step.
Where the C library has no mallopt (not glibc) there is nothing to compare, and the result says so.

Two arms at once (`make seeds JOBS=2`: each stage process gets cores / JOBS threads) against one at a
time with every core:
- train.cpu_jobs_steps_per_s: {"1x<cores> threads", "<cores>x1 thread"}: training steps a second over
  the machine, one process with all threads against one single-threaded process per core running
  together; train.cpu_jobs_throughput: the second over the first. (Another thread count sums in another
  order: the results of such runs name their threads in their device, and differ in the last bits.)
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

MODES = ("glibc", "tuned")


def _child(tmp: Path, mode: str, steps: int, threads: int) -> dict:
    """In this (fresh) process: `steps` timed training steps after three warm-up ones, on `threads`
    threads (0: torch's default)."""
    import resource
    import time

    import torch

    if threads:
        torch.set_num_threads(threads)

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


def _children(tmp: Path, mode: str, steps: int, threads: int, count: int) -> list[dict]:
    """`count` fresh processes of `_child`, running together; their results."""
    cmd = [sys.executable, "-m", "benchmarks.cpu_processes", str(tmp), mode, str(steps), str(threads)]
    root = Path(__file__).resolve().parents[1]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=root) for _ in range(count)]
    outs = [proc.communicate()[0] for proc in procs]
    if any(proc.returncode for proc in procs):
        raise RuntimeError(f"{' '.join(cmd)} failed")
    return [json.loads(out.splitlines()[-1]) for out in outs]


def bench_cpu_jobs(tmp: Path, rounds: int = 3, steps: int = 20) -> dict:
    """Steps a second over the machine: one process on every core against one single-threaded process
    per core, running together (module docstring)."""
    import os

    from benchmarks.real_scale import default_corpus

    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        return {"train.cpu_jobs": "not measured: one core"}
    default_corpus(tmp)
    one, many = f"1x{cores} threads", f"{cores}x1 thread"
    rates = {one: [], many: []}
    for _ in range(rounds):
        rates[one].append(1 / _children(tmp, "tuned", steps, cores, 1)[0]["seconds"])
        rates[many].append(sum(1 / r["seconds"] for r in _children(tmp, "tuned", steps, 1, cores)))
    ratios = [m / o for o, m in zip(rates[one], rates[many], strict=True)]
    medians = {k: round(statistics.median(v), 3) for k, v in rates.items()}
    return {
        "train.cpu_jobs_steps_per_s": medians,
        "train.cpu_jobs_throughput": round(medians[many] / medians[one], 3),
        "train.cpu_jobs_throughput_rounds": [round(min(ratios), 3), round(max(ratios), 3)],
        "train.cpu_jobs_setting": f"default profile's training step, {steps} steps after 3 warm-up ones per "
        f"fresh process, {rounds} interleaved rounds, medians",
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
            runs[mode].append(_children(tmp, mode, steps, threads=0, count=1)[0])

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
    tmp, mode, steps, threads = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    print(json.dumps(_child(tmp, mode, steps, threads)))
