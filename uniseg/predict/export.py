"""`uniseg export`: a model file -> an ONNX file that ONNX Runtime (or any ONNX runtime) runs without
uniseg or PyTorch; and `OnnxModel`, which runs such a file for `uniseg predict --runtime onnx`.

The graph: input `image`, float32 [batch, 3, height, width] (RGB scaled to [0, 1], normalised with the
encoder's mean and std: what `uniseg.model.inputs.normalise` gives), every dimension dynamic; output
`logits` [batch, K, height, width] (default) or `probs` (`scores="probs"`: `ModelInfo.probs` inside the
graph). The file's `metadata_props` hold what predict needs (the ModelInfo: classes, backbone,
classifier, t, loss, offset, ...), the score function in words, the opset, the input's normalisation
and the model file it came from (`read_metadata`).

Exporter: torch's default, the torch.export-based (dynamo) one, at opset 18 (OPSET). It checks every
shape expression symbolically, writes named dynamic dimensions, folds BatchNorm into the convolutions,
and the graph matched PyTorch to 1e-5 or better in the logits; the legacy TorchScript exporter is
deprecated (it warns) and matched as closely. Neither exporter can keep SegModel's own `if padding needed` test (both
froze it to the example's answer: an export at a multiple of 32 failed in ONNX Runtime at 50x77),
so the export wraps the model (`Exportable`) to pad always, by amounts computed from the input's
shape (zero when it is a multiple of 32), which the graph keeps as shape arithmetic.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from uniseg.errors import UserError, choices

# Every op of the graph in its current form (Resize-18, ReduceL2 with axes as an input), and older
# runtimes than the exporter's own 20 (ONNX Runtime >= 1.14) run it; the graph is the same ops at 20.
OPSET = 18
FORMAT = "uniseg-onnx"
VERSION = 1
SCORES = ("logits", "probs")
# Exported graph vs PyTorch, float32 on the CPU: |onnx - torch| <= TOLERANCE * max(1, max |torch|).
# Different kernels (ONNX Runtime's MLAS vs oneDNN) and BatchNorm folded into the convolutions sum in
# another order; measured 2.4e-6 to 4.1e-6 on tests/test_export.py's random hrnet_w18_small models
# (logits up to 2.8) and 1.0e-5 on a trained 70-class model (logits up to 12): 1e-4 leaves about 20x
# headroom and is far below a difference that moves a decision (cosine logits span +-t = +-20).
TOLERANCE = 1e-4
# The example the exporter traces: batch 2 (an example batch of 1 lets the exporter specialise the
# batch to 1) and a size that is not a multiple of 32 (the padding is traced, not skipped).
EXAMPLE = (2, 3, 50, 77)


class Exportable(nn.Module):
    """SegModel for export: normalised images [B, 3, H, W] -> logits (or probabilities) [B, K, H, W],
    exactly SegModel.forward, with the padding to a multiple of 32 always applied (by zero where H or W
    already is one) so that no branch depends on the example's size."""

    def __init__(self, model: nn.Module, info, scores: str = "logits"):
        super().__init__()
        self.model, self.info, self.scores = model, info, scores

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        s = self.model.STRIDE
        # Padded sizes written as s * ceil(h / s): the exporter's shape algebra then proves that
        # SegModel.features needs no more padding (with -h % s it could not, and guarded on the
        # example's answer). Zero padding where h or w already is a multiple of s.
        x = F.pad(x, (0, s * ((w + s - 1) // s) - w, 0, s * ((h + s - 1) // s) - h))
        logits = self.model.to_input_size(self.model.classifier(self.model.features(x)), (h, w))
        return self.info.probs(logits) if self.scores == "probs" else logits


def score_function(info) -> str:
    """What turns the logits into class scores, in words (the metadata's `uniseg.score_function`)."""
    if info.sigmoid:
        return f"sigmoid(logits + {info.offset!r}) per class"
    return "softmax(logits) over the class axis (1)"


def export_onnx(
    model: nn.Module, info, out: str | Path, scores: str = "logits", source: dict | None = None
) -> dict:
    """Export a SegModel (any device) with its ModelInfo to `out` (written atomically, one file; `source`:
    extra `uniseg.<key>` metadata, e.g. the model file's path and sha256). Checks the graph in ONNX
    Runtime against PyTorch on one random batch (EXAMPLE) and returns {"out", "opset", "output",
    "classes", "max_abs_diff", "tolerance", "bytes"}."""
    import onnx

    from uniseg.fsio import atomic_path
    from uniseg.model.backbones import MEAN, STD

    if scores not in SCORES:
        raise UserError(f"--scores: unknown {scores!r}; valid: {choices(SCORES)}")
    if any(isinstance(m, nn.SyncBatchNorm) for m in model.modules()):
        # GPU-only and not exportable; a model file (load_model_file) always has plain BatchNorm
        raise UserError("export a model file (load_model_file): this model has SyncBatchNorm layers")
    model = model.float().cpu().eval()
    wrapped = Exportable(model, info, scores).eval()
    example = torch.randn(*EXAMPLE, generator=torch.Generator().manual_seed(0))
    dim = torch.export.Dim
    # min=1: the padded size 32 * ceil(h / 32) is then provably positive; without it torch.export stops
    # with a guard and the exporter retries with its own refined ranges (twice the time).
    dynamic = {"x": {0: dim("batch"), 2: dim("height", min=1), 3: dim("width", min=1)}}
    try:
        program = torch.onnx.export(
            wrapped,
            (example,),
            dynamo=True,
            opset_version=OPSET,
            input_names=["image"],
            output_names=[scores],
            dynamic_shapes=dynamic,
            external_data=False,
            verbose=False,
        )
    except Exception as exc:  # the exporter's errors are long; its first line says what failed
        raise UserError(
            f"ONNX export of {info.backbone}/{info.classifier} failed ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''})"
        ) from None
    proto = program.model_proto
    meta = {
        "uniseg.format": FORMAT,
        "uniseg.version": str(VERSION),
        "uniseg.info": json.dumps(asdict(info)),
        "uniseg.classes": json.dumps(list(info.classes)),
        "uniseg.output": scores,
        "uniseg.score": "sigmoid" if info.sigmoid else "softmax",
        "uniseg.offset": repr(float(info.offset)),
        "uniseg.score_function": score_function(info),
        "uniseg.opset": str(OPSET),
        "uniseg.input": "image: float32 [batch, 3, height, width], RGB / 255 normalised with uniseg.mean "
        "and uniseg.std; any height and width (padded to a multiple of 32 inside, cropped back)",
        "uniseg.mean": json.dumps(list(MEAN)),
        "uniseg.std": json.dumps(list(STD)),
    }
    meta.update({f"uniseg.{key}": str(value) for key, value in (source or {}).items()})
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = f"uniseg {info.backbone}/{info.classifier}, {len(info.classes)} classes, {scores}"
    with atomic_path(out, suffix=".onnx") as tmp:
        onnx.save_model(proto, str(tmp))
        diff, scale = _check(tmp, wrapped, example)
    return {
        "out": str(out),
        "opset": OPSET,
        "output": scores,
        "classes": len(info.classes),
        "max_abs_diff": diff,
        "tolerance": TOLERANCE * scale,
        "bytes": Path(out).stat().st_size,
    }


def _check(path: Path, wrapped: nn.Module, example: torch.Tensor) -> tuple[float, float]:
    """The exported file against PyTorch on the example: (max |onnx - torch|, max(1, max |torch|)); a
    difference beyond the tolerance is an exporter bug, reported before the file is renamed into place."""
    session = _session(path, "cpu")
    with torch.inference_mode():
        ref = wrapped(example).numpy()
    got = session.run(None, {session.get_inputs()[0].name: example.numpy()})[0]
    diff, scale = float(np.abs(got - ref).max()), max(1.0, float(np.abs(ref).max()))
    if not diff <= TOLERANCE * scale:  # also catches NaN
        raise UserError(
            f"the exported graph differs from PyTorch by {diff:.3g} (tolerance {TOLERANCE * scale:.3g}); "
            "nothing written: please report it with the torch, onnxscript and onnxruntime versions"
        )
    return diff, scale


def export_model(model_path: str | Path, out: str | Path | None = None, scores: str = "logits") -> dict:
    """A model file (models/*.pt) -> an ONNX file (default: beside it, `.onnx`); see export_onnx."""
    from uniseg.model.segmodel import load_model_file

    model_path = Path(model_path)
    if scores not in SCORES:
        raise UserError(f"--scores: unknown {scores!r}; valid: {choices(SCORES)}")
    out = Path(out) if out is not None else model_path.with_suffix(".onnx")
    if out.resolve() == model_path.resolve():
        raise UserError(f"--out: {out} is the model file itself; name an .onnx file")
    model, info = load_model_file(model_path, "cpu")
    # The model file's path and content: predict's --submission finds the evaluate stage's θ by its stem.
    source = {"source": str(model_path), "source_sha256": hashlib.sha256(model_path.read_bytes()).hexdigest()}
    return export_onnx(model, info, out, scores, source)


def _session(path: str | Path, device: str, threads: int = 0):
    """An ONNX Runtime session on the CPU or (onnxruntime-gpu) CUDA; `threads` 0: ONNX Runtime's default
    (one per physical core)."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if str(device).startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise UserError(
                "--device cuda: this onnxruntime has no CUDA provider (install onnxruntime-gpu), or use --device cpu"
            )
        providers.insert(0, "CUDAExecutionProvider")
    elif str(device) not in ("cpu", "auto"):
        raise UserError(f"--device: {device!r} is not available with --runtime onnx; use cpu or cuda")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings are about graph optimisations, not results
    options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:
        hint = "; a model file (.pt) runs with --runtime torch" if Path(path).suffix == ".pt" else ""
        raise UserError(
            f"{path}: not an ONNX model file ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}){hint}"
        ) from None


def read_metadata(path: str | Path, metadata: dict[str, str]):
    """The ModelInfo of an exported file from its metadata_props; UserError when it has none."""
    from uniseg.model.segmodel import ModelInfo

    if metadata.get("uniseg.format") != FORMAT:
        raise UserError(f"{path}: an ONNX file without uniseg's metadata; export it with `uniseg export`")
    if metadata.get("uniseg.version") != str(VERSION):
        raise UserError(
            f"{path}: exported with metadata version {metadata.get('uniseg.version')}, this uniseg reads "
            f"{VERSION}; export the model file again"
        )
    try:
        return ModelInfo(**json.loads(metadata["uniseg.info"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: invalid uniseg.info metadata ({exc})") from None


class OnnxModel:
    """An exported model run by ONNX Runtime, used as predict uses a SegModel: `model(x)` takes normalised
    images [B, 3, H, W] (a torch tensor, any device) and returns the graph's output [B, K, H, W] as a
    float32 CPU tensor; `probs(x)` the class probabilities whichever output the graph has. `info` is the
    ModelInfo from the file's metadata, `metadata` all of it. `threads`: ONNX Runtime's intra-op threads
    (0: its default)."""

    def __init__(self, path: str | Path, device: str = "cpu", threads: int = 0):
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: model file not found")
        self.session = _session(path, device, threads)
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.info = read_metadata(path, self.metadata)
        self.output = self.metadata.get("uniseg.output", "logits")
        if self.output not in SCORES:
            raise UserError(f"{path}: unknown uniseg.output {self.output!r}; valid: {choices(SCORES)}")
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().float().cpu().numpy())
        return torch.from_numpy(self.session.run(None, {self.input: array})[0])

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images [B, 3, H, W] -> class probabilities [B, K, H, W] (ModelInfo.probs of the
        logits, or the graph's own `probs`)."""
        out = self(x)
        return out if self.output == "probs" else self.info.probs(out)
