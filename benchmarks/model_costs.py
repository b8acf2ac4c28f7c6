"""What each architecture costs, measured: SegFormer (MiT-B0, MiT-B4) beside HRNetV2 (W18, W48), each with
a 70-class cosine classifier (the union of the four training datasets) on random weights.

- arch.<backbone>.params_m, .encoder_params_m: parameters in millions, the whole model and its encoder
- arch.<backbone>.gflops_713: FLOPs of one 713x713 forward pass (the paper's crop), counted by
  torch.utils.flop_counter (2 per multiply-add, convolutions and matrix products, attention's included:
  timm's fused attention is switched to its matmul form for the count). The SegFormer and HRNet papers'
  "GFLOPs" count multiply-adds of convolutions and linear layers (mmcv's counter): about half these, less
  attention's products for a MiT.
- arch.<backbone>.peak_mib_1080p: the peak memory one 1920x1080 forward pass adds (float32,
  inference_mode, batch 1), in a fresh process: the resident set's peak after the pass minus before it
  (the weights and the interpreter excluded)
- arch.<backbone>.seconds_1080p: that pass's time on this machine's CPU (the second pass; the first
  builds the kernels)
- arch.setting: threads, CPU, versions
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

import torch

BACKBONES = ("mit_b0", "mit_b4", "hrnet_w18", "hrnet_w48")
CLASSES = 70


def _model(backbone: str):
    from uniseg.model.segmodel import build_model

    torch.manual_seed(0)
    return build_model(backbone, "cosine", CLASSES).eval()


def gflops(model, size: tuple[int, int] = (713, 713)) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    for m in model.modules():  # timm's fused attention is one kernel the counter does not know
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(torch.zeros(1, 3, *size))
    return counter.get_total_flops() / 1e9


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def one(backbone: str) -> dict:
    """This process's figures for `backbone` (run in a fresh process: peak memory is per process)."""
    from uniseg.model.segmodel import tune_cpu

    tune_cpu()
    model = _model(backbone)
    x = torch.randn(1, 3, 1080, 1920)
    before = _peak_kib()
    with torch.inference_mode():
        model(x)
        peak = _peak_kib() - before
        start = time.perf_counter()
        model(x)
        seconds = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    encoder = sum(p.numel() for p in model.encoder.parameters())
    return {
        "params_m": round(params / 1e6, 2),
        "encoder_params_m": round(encoder / 1e6, 2),
        "gflops_713": round(gflops(model), 1),
        "peak_mib_1080p": round(peak / 1024),
        "seconds_1080p": round(seconds, 2),
    }


def bench_model_costs(backbones=BACKBONES) -> dict:
    """The figures above for each backbone, each in its own process."""
    out = {}
    for backbone in backbones:
        run = subprocess.run(
            [sys.executable, "-m", "benchmarks.model_costs", backbone],
            capture_output=True,
            text=True,
            check=True,
        )
        for key, value in json.loads(run.stdout.strip().splitlines()[-1]).items():
            out[f"arch.{backbone}.{key}"] = value
    import timm

    out["arch.setting"] = (
        f"float32, batch 1, {torch.get_num_threads()} threads, CPU {torch.backends.cpu.get_cpu_capability()}, "
        f"torch {torch.__version__}, timm {timm.__version__}; {CLASSES}-class cosine head, random weights"
    )
    return out


if __name__ == "__main__":
    print(json.dumps(one(sys.argv[1])))
