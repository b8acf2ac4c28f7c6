"""The backbones: the encoder contract, one module per family (`hrnet.py`, `mit.py`), and the backbone
file's format (written by the pretrain stage, read here only).

A family module declares:
- `NAMES`: the `model.backbone` values it builds; the module is named by the names' first word
  (`uniseg.identity.family`: hrnet_w18 -> hrnet.py), so a model's identity covers its own family only.
- `create(backbone)`: the encoder with random weights, an `nn.Module` that maps normalised images
  [B, 3, H, W] (H, W multiples of 32; normalised with `MEAN`, `STD`, the ImageNet statistics every
  family's weights were trained with) to a list of four feature maps at strides 4, 8, 16 and 32, and whose
  `feature_info.channels()` gives their channels.
- `from_hub(backbone)` and `from_checkpoint(backbone, path)`: the encoder with ImageNet weights (a
  `UserError` that says where to get them when they cannot be had).
- `decoder(backbone, channels)`: the family's decode head, an `nn.Module` that maps the four feature maps
  to one map at stride 4 and whose `channels` attribute gives its width; the classifier labels that map.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from uniseg import identity
from uniseg.errors import UserError
from uniseg.fsio import save_torch

BACKBONE_FORMAT = "uniseg-backbone"  # a pretrained encoder alone (the pretrain stage's output)
# ImageNet statistics used by timm's HRNet weights; images are normalised with them everywhere.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def save_backbone_file(path: str | Path, encoder: nn.Module, backbone: str, summary: dict) -> None:
    """A backbone file: the timm encoder's weights, its name and how it was pretrained (`summary`)."""
    state = {k: v.detach().cpu() for k, v in encoder.state_dict().items()}
    payload = {"format": BACKBONE_FORMAT, "version": 1, "backbone": backbone, "summary": summary}
    save_torch({**payload, "state_dict": state}, path)


def read_backbone_file(path: str | Path) -> dict | None:
    """The payload of a backbone file, or None when `path` is some other checkpoint (e.g. timm's)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a torch file we can read safely: leave it to timm
        return None
    return payload if isinstance(payload, dict) and payload.get("format") == BACKBONE_FORMAT else None


def family(backbone: str) -> ModuleType:
    """The module of `backbone`'s family (`uniseg.identity.family`: hrnet_w18 -> hrnet.py)."""
    module = importlib.import_module(f"{__name__}.{identity.family(backbone)}")
    if backbone not in module.NAMES:
        raise UserError(f"model.backbone: {backbone!r} is not one of {module.__name__}'s {module.NAMES}")
    return module


def create_decoder(backbone: str, channels: list[int]) -> nn.Module:
    """The decode head of `backbone`'s family over feature maps of `channels` (random weights)."""
    return family(backbone).decoder(backbone, channels)


def create_encoder(backbone: str, pretrained: str) -> nn.Module:
    """The encoder of `backbone` with random weights ("none"), ImageNet ("timm", from timm's hub), a
    backbone file of the pretrain stage, or an ImageNet checkpoint file of the family."""
    builder = family(backbone)
    if pretrained == "none":
        return builder.create(backbone)
    if pretrained == "timm":
        return builder.from_hub(backbone)
    path = Path(pretrained)
    if not path.is_file():
        raise UserError(
            f"model.pretrained: {pretrained!r} is not a file (use none, timm or a checkpoint path; the "
            "default models/pretrained.pt is the pretrain stage's output: dvc repro pretrain)"
        )
    own = read_backbone_file(path)
    if own is not None:
        if own["backbone"] != backbone:
            raise UserError(
                f"model.pretrained: {path} holds a pretrained {own['backbone']}, model.backbone is {backbone}; "
                "set pretrain.backbone to it and rerun the pretrain stage, or use another checkpoint"
            )
        encoder = builder.create(backbone)
        encoder.load_state_dict(own["state_dict"])  # strict: every weight of the encoder is loaded
        return encoder
    return builder.from_checkpoint(backbone, path)
