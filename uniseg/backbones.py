"""The backbones: timm's HRNets as feature extractors (the four branches), with their weights from
nowhere, ImageNet (timm's hub), the pretrain stage's backbone file, or a timm checkpoint file — and the
backbone file's format (written by the pretrain stage, read here only).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

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


def create_encoder(backbone: str, pretrained: str) -> nn.Module:
    """timm's HRNet as a feature extractor (the four branches): random weights ("none"), ImageNet
    ("timm", from timm's hub), a backbone file of the pretrain stage, or a timm checkpoint file."""
    import timm

    kwargs = dict(features_only=True, feature_location="", out_indices=(1, 2, 3, 4))
    if pretrained == "none":
        return timm.create_model(backbone, pretrained=False, **kwargs)
    if pretrained == "timm":
        # Fail fast instead of hanging when the hub is unreachable.
        os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
        os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "30")
        try:
            return timm.create_model(backbone, pretrained=True, **kwargs)
        except Exception as exc:  # network, hub or cache errors all mean the same to the user
            raise UserError(
                f"model.pretrained=timm: could not get ImageNet weights for {backbone} from the timm hub "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]}). Offline? Download the checkpoint "
                f"where the hub is reachable (timm.create_model('{backbone}', pretrained=True) caches it), then "
                "set model.pretrained to the .pth/.safetensors file path"
            ) from None
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
        encoder = timm.create_model(backbone, pretrained=False, **kwargs)
        encoder.load_state_dict(own["state_dict"])  # strict: every weight of the encoder is loaded
        return encoder
    try:
        return timm.create_model(
            backbone, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs
        )
    except Exception as exc:
        raise UserError(
            f"model.pretrained: {path} is not an ImageNet checkpoint of {backbone} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
        ) from None
