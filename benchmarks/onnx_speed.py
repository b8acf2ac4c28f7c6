"""Inference at 1080p on the CPU: PyTorch float32, PyTorch bf16 autocast and ONNX Runtime, side by side.

The default profile's model architecture (params.yaml: backbone, classifier, t, loss; the union of the
four training datasets' label spaces, 70 classes) on random weights, exported with `uniseg export`'s
code (uniseg.predict.export), one normalised 1920x1080 image, batch 1, the model's forward pass only
(logits at the input size; no decoding, resizing or argmax). Rounds interleaved, medians
(benchmarks/run.py `_interleaved`); every runtime uses torch's thread count.

- onnx.images_per_s_torch_fp32, onnx.images_per_s_torch_bf16 (bf16 autocast + channels_last, as
  `train.amp_cpu`; None where the CPU has no bf16 units, `cpu_has_bf16`), onnx.images_per_s_ort
- onnx.ort_over_torch_fp32: ONNX Runtime's images/s over PyTorch float32's (> 1: ONNX Runtime faster)
- onnx.max_abs_diff: max |ONNX Runtime - PyTorch float32| of the logits on the benchmark's image
- onnx.setting: size, classes, threads, versions
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def bench_onnx_speed(
    folder: Path | None = None, size: tuple[int, int] = (1080, 1920), rounds: int = 5, warmup: int = 1
) -> dict:
    """images/s of one (H, W) = `size` image, batch 1, per runtime; the ONNX file is written in `folder`
    (a temporary one by default)."""
    import onnxruntime

    from benchmarks.run import _interleaved
    from uniseg import taxonomy
    from uniseg.model.losses import prior_offset
    from uniseg.model.segmodel import ModelInfo, build_model, cpu_has_bf16, tune_cpu
    from uniseg.params import load_params
    from uniseg.predict.export import export_onnx

    p = load_params(ROOT / "params.yaml")
    union = taxonomy.union(taxonomy.label_space(d) for d in ("cityscapes", "bdd", "idd", "mapillary"))
    k, m = len(union), p.model
    tune_cpu()  # as predict does
    torch.manual_seed(0)
    model = build_model(m.backbone, m.classifier, k, m.t).eval()
    info = ModelInfo(
        union, m.backbone, m.classifier, m.t, p.loss, offset=prior_offset(m.classifier, p.loss, k)
    )
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(folder or tmp) / "model.onnx"
        export_onnx(model, info, path)
        # ONNX Runtime's own default is one thread per physical core; torch's count makes it like for like.
        # Its threads spin-wait after each run by default, taking the cores from the next runtime timed.
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        x_np = x.numpy()

        @torch.inference_mode()
        def fp32():
            return model(x)

        fns = {"torch_fp32": fp32, "ort": lambda: session.run(None, {"image": x_np})[0]}
        bf16 = cpu_has_bf16()
        if bf16:
            model_cl = build_model(m.backbone, m.classifier, k, m.t).eval()
            model_cl.load_state_dict(model.state_dict())
            model_cl = model_cl.to(memory_format=torch.channels_last)
            x_cl = x.contiguous(memory_format=torch.channels_last)

            @torch.inference_mode()
            def bf16_autocast():
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return model_cl(x_cl)

            fns["torch_bf16"] = bf16_autocast
        diff = float((torch.from_numpy(fns["ort"]()) - fp32()).abs().max())
        seconds = _interleaved(fns, rounds, warmup)
    speed = {name: 1.0 / s for name, s in seconds.items()}

    return {
        "onnx.images_per_s_torch_fp32": round(speed["torch_fp32"], 3),
        "onnx.images_per_s_torch_bf16": round(speed["torch_bf16"], 3) if bf16 else None,
        "onnx.images_per_s_ort": round(speed["ort"], 3),
        "onnx.ort_over_torch_fp32": round(speed["ort"] / speed["torch_fp32"], 3),
        "onnx.max_abs_diff": float(f"{diff:.3g}"),
        "onnx.setting": (
            f"{m.backbone}/{m.classifier}, {k} classes, 1x3x{size[0]}x{size[1]} float32 input, "
            f"{rounds} interleaved rounds (medians), {torch.get_num_threads()} threads, torch "
            f"{torch.__version__}, onnxruntime {onnxruntime.__version__}"
            + ("" if bf16 else "; bf16 not measured: no bf16 units on this CPU")
        ),
    }


if __name__ == "__main__":  # a quick look: python -m benchmarks.onnx_speed [H W rounds]
    import sys

    args = [int(a) for a in sys.argv[1:4]]
    size, rounds = (tuple(args[:2]) if len(args) >= 2 else (1080, 1920)), (args[2] if len(args) > 2 else 5)
    for key, value in bench_onnx_speed(size=size, rounds=rounds).items():
        print(f"{key:<36} {value}")
