"""The segmentation network: a backbone family's encoder and decode head, then a linear or cosine classifier.

The family (`model/backbones/<family>.py`) builds both: HRNetV2's head for HRNet (the four branches
upsampled to stride 4, concatenated, mixed by a 1x1 conv + BN + ReLU), SegFormer's all-MLP head for MiT.
The classifier labels each stride-4 feature; the logits are upsampled to the input size.
The cosine classifier (UniSeg, Sec. 3.3) is t * <f/|f|, w/|w|>: its logits are bounded by +-t and its
per-class cosines are what the relation-mining stage reads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from uniseg.errors import UserError, choices
from uniseg.fsio import save_torch
from uniseg.model.backbones import create_decoder, create_encoder
from uniseg.model.losses import loss_spec, sigmoid_prior
from uniseg.names import BACKBONES, CLASSIFIERS

MODEL_FORMAT = "uniseg-model"
MODEL_VERSION = 1


@dataclass(frozen=True)
class ModelInfo:
    """What inference needs besides the weights (stored in the model file)."""

    classes: list[str]  # the union, in output-channel order
    backbone: str
    classifier: str
    t: float
    loss: str  # ce | bce | nullbce | crbce: softmax (ce) or sigmoid scores
    datasets: list[str] = field(default_factory=list)  # training datasets
    spaces: dict[str, list[str]] = field(default_factory=dict)  # their label spaces
    offset: float = 0.0  # added to the logits before the sigmoid (losses.sigmoid_prior, cosine + sigmoid)

    @property
    def sigmoid(self) -> bool:
        return loss_spec(self.loss).sigmoid

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Class scores: softmax for a CE model, sigmoid(logits + offset) otherwise."""
        logits = logits.float()
        return torch.sigmoid(logits + self.offset) if self.sigmoid else torch.softmax(logits, 1)


class CosineClassifier(nn.Module):
    """logits = t * cos(feature, class weight); no bias. Output in [-t, t]."""

    def __init__(self, channels: int, num_classes: int, t: float):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, channels) * 0.01)
        self.t = t

    def cosine(self, feats: torch.Tensor) -> torch.Tensor:
        """feats [B, C, h, w] -> cosines [B, K, h, w] in [-1, 1]."""
        f = F.normalize(feats, dim=1)
        w = F.normalize(self.weight, dim=1)
        return torch.einsum("bchw,kc->bkhw", f, w)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.t * self.cosine(feats)


class LinearClassifier(nn.Module):
    """A 1x1 conv. The bias starts at the prior -log(K-1) (p = 1/K under a sigmoid): with a zero bias,
    sigmoid losses spend their first iterations only pushing every class down (see README, "BCE prior")."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, num_classes, 1)
        nn.init.normal_(self.conv.weight, std=0.01)
        nn.init.constant_(self.conv.bias, sigmoid_prior(num_classes))

    def cosine(self, feats: torch.Tensor) -> torch.Tensor:
        """The same cosine as the cosine classifier, from normalised features and weights (bias unused)."""
        f = F.normalize(feats, dim=1)
        w = F.normalize(self.conv.weight.flatten(1), dim=1)
        return torch.einsum("bchw,kc->bkhw", f, w)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.conv(feats)


class SegModel(nn.Module):
    """x: normalised images [B, 3, H, W] -> logits [B, K, H, W]. `head` (the family's decode head) maps the
    encoder's four feature maps to one stride-4 map of `head.channels` channels."""

    def __init__(self, encoder: nn.Module, head: nn.Module, classifier: str, num_classes: int, t: float):
        super().__init__()
        self.encoder = encoder
        self.head = head
        if classifier == "cosine":
            self.classifier = CosineClassifier(head.channels, num_classes, t)
        else:
            self.classifier = LinearClassifier(head.channels, num_classes)

    STRIDE = 32  # the encoders' coarsest map: inputs are padded to a multiple of it

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel features at stride 4 of the input padded (bottom/right, zeros) to a multiple of 32:
        [B, C, ceil32(H)/4, ceil32(W)/4]."""
        h, w = x.shape[-2:]
        ph, pw = -h % self.STRIDE, -w % self.STRIDE
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        return self.head(self.encoder(x))

    def to_input_size(self, maps: torch.Tensor, size) -> torch.Tensor:
        """Maps at the feature stride [B, k, h, w] -> bilinearly upsampled to the input size [B, k, H, W]
        (the padding to a multiple of 32 cropped off): what forward() does to the logits."""
        h, w = size
        padded = (h + (-h % self.STRIDE), w + (-w % self.STRIDE))
        maps = F.interpolate(maps, size=padded, mode="bilinear", align_corners=False)
        return maps[..., :h, :w]

    def cosine(self, feats: torch.Tensor) -> torch.Tensor:
        """[B, C, h, w] -> cosine similarity of each pixel feature with each class weight, [B, K, h, w]."""
        return self.classifier.cosine(feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_input_size(self.classifier(self.features(x)), x.shape[-2:])


def build_model(backbone: str, classifier: str, num_classes: int, t: float = 20.0, pretrained: str = "none"):
    """A SegModel of `backbone`'s family with `num_classes` outputs (the size of the training union)."""
    if backbone not in BACKBONES:
        raise UserError(f"model.backbone: unknown backbone {backbone!r}; valid: {choices(BACKBONES)}")
    if classifier not in CLASSIFIERS:
        raise UserError(f"model.classifier: unknown classifier {classifier!r}; valid: {choices(CLASSIFIERS)}")
    if num_classes < 2:
        raise UserError(f"the model needs at least 2 classes, got {num_classes}")
    encoder = create_encoder(backbone, pretrained)
    head = create_decoder(backbone, list(encoder.feature_info.channels()))
    return SegModel(encoder, head, classifier, num_classes, t)


def unwrap(model: nn.Module) -> nn.Module:
    """The SegModel inside a DDP wrapper and/or a torch.compile wrapper."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def save_model_file(path: str | Path, model: nn.Module, info: ModelInfo) -> None:
    """Weights + ModelInfo, written atomically; loadable with torch.load(weights_only=True)."""
    state = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    payload = {"format": MODEL_FORMAT, "version": MODEL_VERSION, "info": asdict(info), "state_dict": state}
    save_torch(payload, path)


def read_model_file(path: str | Path) -> tuple[dict, ModelInfo]:
    """The state dict and ModelInfo of a model file; never runs code from the file (weights_only)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: model file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        # torch's own message is about its pickle loader (pages of it), not about the file: name the error only
        raise UserError(
            f"{path}: not a uniseg model file (torch.load cannot read it as weights: {type(exc).__name__})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise UserError(f"{path}: not a uniseg model file (no '{MODEL_FORMAT}' header)")
    if payload.get("version") != MODEL_VERSION:
        raise UserError(
            f"{path}: model file version {payload.get('version')} is not supported by this uniseg "
            f"(expects {MODEL_VERSION}); retrain it or use the matching uniseg version"
        )
    try:
        info = ModelInfo(**payload["info"])
    except TypeError as exc:
        raise UserError(f"{path}: model file has an invalid info block ({exc})") from None
    return payload["state_dict"], info


# glibc's mallopt parameters (malloc.h) and the value both are raised to: mallopt takes an int.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, KEEP_BYTES = -1, -3, 2**31 - 1


def tune_cpu() -> None:
    """The process settings of CPU-heavy work (training, evaluation, mining, prediction):

    - Denormal floats are treated as zero. Pretrained weights drive some activations into the denormal
      range, where CPU arithmetic is many times slower: a training step of the default profile took
      0.74 s instead of 0.52 s (docs/findings.md). The values lost are below 1e-38.
    - Freed memory is kept for the next step. glibc hands every allocation above its mmap threshold
      (128 KiB, adapting up to 32 MiB) to the kernel and unmaps it on free, so each step maps its large
      activations and logits afresh and the kernel zeroes every page on first touch: about 190,000 page
      faults a second and a quarter of the CPU in the kernel in a ladder arm. Raising the mmap and trim
      thresholds (mallopt) keeps them in the heap: 40 training iterations went from 4.9 to 0.26 million
      page faults and from 12 to 2 s of system time, with a byte-identical model file (only the
      allocator changes, not a float). Skipped where the C library has no mallopt (not glibc)."""
    torch.set_flush_denormal(True)
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, KEEP_BYTES)
        libc.mallopt(M_TRIM_THRESHOLD, KEEP_BYTES)


def _libc():
    """The C library when it is glibc (it has mallopt), else None."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") else None


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware: AMX tiles or AVX-512 BF16, as torch's CPU feature
    checks report them (the same instructions its oneDNN kernels pick). Without them bf16 is emulated
    and slower than float32."""
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def resolve_device(device: str) -> torch.device:
    """ "auto" -> cuda when a GPU is available, else cpu; otherwise the named device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise UserError(f"--device: unknown device {device!r}; use auto, cpu or cuda") from None


def load_model_file(path: str | Path, device: str | torch.device = "cpu") -> tuple[SegModel, ModelInfo]:
    """A ready-to-use model (eval mode, on `device`) and its ModelInfo, from the model file alone."""
    state, info = read_model_file(path)
    model = build_model(info.backbone, info.classifier, len(info.classes), info.t, pretrained="none")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise UserError(
            f"{path}: weights do not fit {info.backbone}/{info.classifier} ({str(exc)[:160]})"
        ) from None
    return model.to(device).eval(), info
