"""The MiT family (SegFormer's Mix Transformer encoder, Xie et al. 2021: `mit_b0` ... `mit_b5`) and
SegFormer's all-MLP decode head.

The encoder is timm's PVTv2 (Apache-2.0) built with MiT's configuration. The two share their structure:
overlapping patch embeddings (7x7 stride 4, then 3x3 stride 2), attention whose keys and values are spatially
reduced by a strided conv + LayerNorm (ratios 8, 4, 2, 1), a feed-forward with a 3x3 depth-wise conv
between its two linear layers, a LayerNorm closing each stage. They differ in the feed-forward's expansion
(PVTv2-B0...B4: 8, 8, 4, 4; MiT: 4 at every stage), which `_CONFIGS` sets, with MiT's depths and widths.
Parameters (tests/test_mit.py): MiT-B0 3.32 M, MiT-B4 60.8 M, as SegFormer publishes (3.3 M, 61 M; the
ImageNet classifier left out). timm because it is maintained, permissive and already a dependency, and
gives NCHW feature maps through `features_only` as for HRNet; Hugging Face's `SegformerModel` is MiT itself
but brings the transformers library; segmentation-models-pytorch's `mit_b*` is NVIDIA's code under its
non-commercial licence.

ImageNet weights come from a local file: timm's hub has none for MiT (its pvt_v2 weights are PVTv2's). Both
published layouts load: NVIDIA's `mit_b*.pth` (SegFormer's release; also inside an mmsegmentation
checkpoint, under `backbone.`) and Hugging Face's `nvidia/mit-b*` (`pytorch_model.bin` or
`model.safetensors`, keys and values as separate matrices); `_official_keys` and `_timm_keys` map them.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from uniseg.errors import UserError

_WIDE = (64, 128, 320, 512)
# name: (depths, widths, decode-head width) as the SegFormer paper (Table 1 and Sec. 4.1)
_CONFIGS = {
    "mit_b0": ((2, 2, 2, 2), (32, 64, 160, 256), 256),
    "mit_b1": ((2, 2, 2, 2), _WIDE, 256),
    "mit_b2": ((3, 4, 6, 3), _WIDE, 768),
    "mit_b3": ((3, 4, 18, 3), _WIDE, 768),
    "mit_b4": ((3, 8, 27, 3), _WIDE, 768),
    "mit_b5": ((3, 6, 40, 3), _WIDE, 768),
}
NAMES = tuple(_CONFIGS)
DROP_PATH = 0.1  # stochastic depth while training, as SegFormer trains every MiT


def create(backbone: str) -> nn.Module:
    """Random weights."""
    import timm

    depths, widths, _ = _CONFIGS[backbone]
    return timm.create_model(
        f"pvt_v2_{backbone.removeprefix('mit_')}",
        pretrained=False,
        features_only=True,
        depths=depths,
        embed_dims=widths,
        num_heads=(1, 2, 5, 8),
        sr_ratios=(8, 4, 2, 1),
        mlp_ratios=(4, 4, 4, 4),
        qkv_bias=True,
        drop_path_rate=DROP_PATH,
    )


def from_hub(backbone: str) -> nn.Module:
    """timm's hub has no MiT weights: say where they are."""
    raise UserError(
        f"model.pretrained=timm: timm's hub has no ImageNet weights for {backbone} (its pvt_v2 weights are "
        f"PVTv2's, another network). Download NVIDIA's {backbone}.pth (SegFormer's release) or Hugging "
        f"Face's nvidia/{backbone.replace('_', '-')} (pytorch_model.bin or model.safetensors) and set "
        "model.pretrained to the file's path"
    )


def from_checkpoint(backbone: str, path: Path) -> nn.Module:
    """ImageNet weights from NVIDIA's or Hugging Face's MiT checkpoint (every encoder weight loaded)."""
    official = _official_keys(_read(path), path)
    depths, widths = _size(official)
    want_depths, want_widths, _ = _CONFIGS[backbone]
    if (depths, widths) != (want_depths, want_widths):
        held = next((n for n, c in _CONFIGS.items() if c[:2] == (depths, widths)), "no MiT-B0...B5")
        raise UserError(
            f"model.pretrained: {path} holds a MiT with depths {depths} and widths {widths} ({held}); "
            f"model.backbone is {backbone}: use {backbone}'s checkpoint or set model.backbone to match"
        )
    encoder = create(backbone)
    try:
        encoder.load_state_dict(_timm_keys(official))  # strict: every weight of the encoder is loaded
    except RuntimeError as exc:
        raise UserError(f"model.pretrained: {path} does not fit {backbone} ({str(exc)[:200]})") from None
    return encoder


class SegFormerHead(nn.Module):
    """SegFormer's all-MLP decode head: each stage's map projected to `width` channels (a per-pixel linear
    layer), upsampled (bilinear) to stride 4, concatenated (coarsest first, as SegFormer), fused by a 1x1
    conv + BN + ReLU, dropout 0.1 while training."""

    def __init__(self, channels: list[int], width: int):
        super().__init__()
        self.proj = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)
        self.fuse = nn.Sequential(
            nn.Conv2d(len(channels) * width, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout2d(0.1)
        self.channels = width

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        size = maps[0].shape[-2:]
        up = [
            F.interpolate(proj(m), size=size, mode="bilinear", align_corners=False) if i else proj(m)
            for i, (proj, m) in enumerate(zip(self.proj, maps, strict=True))
        ]
        return self.dropout(self.fuse(torch.cat(up[::-1], dim=1)))


def decoder(backbone: str, channels: list[int]) -> nn.Module:
    """SegFormer's head, 256 wide for B0 and B1, 768 for B2...B5."""
    return SegFormerHead(channels, _CONFIGS[backbone][2])


def _read(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file (torch or safetensors), unwrapped from a training checkpoint."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(
            f"model.pretrained: {path} is not a readable checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:120] if str(exc) else ''})"
        ) from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise UserError(f"model.pretrained: {path} holds no state dict")
    return state


# Hugging Face's names (after the `encoder.` prefix) -> NVIDIA's, for everything but keys/values.
_HF_NAMES = [
    (r"^patch_embeddings\.(\d)\.layer_norm\.", lambda m: f"patch_embed{int(m[1]) + 1}.norm."),
    (r"^patch_embeddings\.(\d)\.proj\.", lambda m: f"patch_embed{int(m[1]) + 1}.proj."),
    (r"^block\.(\d)\.(\d+)\.", lambda m: f"block{int(m[1]) + 1}.{m[2]}."),
    (r"^layer_norm\.(\d)\.", lambda m: f"norm{int(m[1]) + 1}."),
]
_HF_PARTS = {
    ".layer_norm_1.": ".norm1.",
    ".layer_norm_2.": ".norm2.",
    ".attention.self.query.": ".attn.q.",
    ".attention.self.sr.": ".attn.sr.",
    ".attention.self.layer_norm.": ".attn.norm.",
    ".attention.output.dense.": ".attn.proj.",
    ".mlp.dense1.": ".mlp.fc1.",
    ".mlp.dense2.": ".mlp.fc2.",
}


def _official_keys(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """The encoder's tensors under NVIDIA's names, from either layout; classifier and decode-head tensors
    dropped."""
    if any("encoder.patch_embeddings." in k for k in state):  # Hugging Face
        out, kv = {}, {}
        for key, value in state.items():
            if "encoder." not in key:
                continue  # the ImageNet classifier, a decode head
            name = key.split("encoder.", 1)[1]
            for pattern, to in _HF_NAMES:
                name = re.sub(pattern, to, name)
            for part, to in _HF_PARTS.items():
                name = name.replace(part, to)
            match = re.fullmatch(r"(.*)\.attention\.self\.(key|value)\.(weight|bias)", name)
            if match:
                kv.setdefault((match[1], match[3]), {})[match[2]] = value
            else:
                out[name] = value
        for (block, kind), parts in kv.items():  # NVIDIA's kv matrix is the keys' over the values'
            out[f"{block}.attn.kv.{kind}"] = torch.cat([parts["key"], parts["value"]])
        return out
    state = {re.sub(r"^(module\.)?(backbone\.)?", "", k): v for k, v in state.items()}
    if any(k.startswith("patch_embed1.") for k in state):  # NVIDIA's (or an mmsegmentation checkpoint's)
        return {k: v for k, v in state.items() if re.match(r"(patch_embed|block|norm)\d", k)}
    raise UserError(
        f"model.pretrained: {path} is not a MiT checkpoint (expected NVIDIA's mit_b*.pth or Hugging "
        "Face's nvidia/mit-b* weights)"
    )


def _size(official: dict[str, torch.Tensor]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(depths, widths) of the MiT whose tensors `official` holds."""
    depths = tuple(
        len({k.split(".")[1] for k in official if k.startswith(f"block{s}.")}) for s in range(1, 5)
    )
    widths = tuple(
        int(official[f"patch_embed{s}.proj.weight"].shape[0])
        if f"patch_embed{s}.proj.weight" in official
        else 0
        for s in range(1, 5)
    )
    return depths, widths


def _timm_keys(official: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """NVIDIA's names -> the timm encoder's (`features_only`: stage s is `stages_{s-1}`)."""
    out = {}
    for key, value in official.items():
        name = re.sub(r"^patch_embed1\.", "patch_embed.", key)
        name = re.sub(r"^patch_embed(\d)\.", lambda m: f"stages_{int(m[1]) - 1}.downsample.", name)
        name = re.sub(r"^block(\d)\.", lambda m: f"stages_{int(m[1]) - 1}.blocks.", name)
        name = re.sub(r"^norm(\d)\.", lambda m: f"stages_{int(m[1]) - 1}.norm.", name)
        out[name.replace(".mlp.dwconv.dwconv.", ".mlp.dwconv.")] = value
    return out
