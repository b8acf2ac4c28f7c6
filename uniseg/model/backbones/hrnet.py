"""The HRNet family (HRNetV2's four branches as the encoder): timm's `hrnet_w18_small`, `hrnet_w18`,
`hrnet_w48` as feature extractors at strides 4, 8, 16 and 32, and HRNetV2's head."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from uniseg.errors import UserError

NAMES = ("hrnet_w18_small", "hrnet_w18", "hrnet_w48")
_FEATURES = dict(features_only=True, feature_location="", out_indices=(1, 2, 3, 4))


def create(backbone: str) -> nn.Module:
    """Random weights."""
    import timm

    return timm.create_model(backbone, pretrained=False, **_FEATURES)


def from_hub(backbone: str) -> nn.Module:
    """ImageNet weights from timm's hub."""
    import timm

    # Fail fast instead of hanging when the hub is unreachable.
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "30")
    try:
        return timm.create_model(backbone, pretrained=True, **_FEATURES)
    except Exception as exc:  # network, hub or cache errors all mean the same to the user
        raise UserError(
            f"model.pretrained=timm: could not get ImageNet weights for {backbone} from the timm hub "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]}). Offline? Download the checkpoint "
            f"where the hub is reachable (timm.create_model('{backbone}', pretrained=True) caches it), then "
            "set model.pretrained to the .pth/.safetensors file path"
        ) from None


def from_checkpoint(backbone: str, path: Path) -> nn.Module:
    """ImageNet weights from a timm checkpoint file."""
    import timm

    try:
        return timm.create_model(
            backbone, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **_FEATURES
        )
    except Exception as exc:
        raise UserError(
            f"model.pretrained: {path} is not an ImageNet checkpoint of {backbone} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
        ) from None


class HRNetV2Head(nn.Sequential):
    """HRNetV2's head: the four branches upsampled (bilinear) to stride 4, concatenated and mixed by a 1x1
    conv + BN + ReLU; as wide as the branches together."""

    def __init__(self, channels: list[int]):
        width = sum(channels)
        super().__init__(nn.Conv2d(width, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.channels = width

    def forward(self, branches: list[torch.Tensor]) -> torch.Tensor:
        size = branches[0].shape[-2:]
        up = [branches[0]] + [
            F.interpolate(b, size=size, mode="bilinear", align_corners=False) for b in branches[1:]
        ]
        return super().forward(torch.cat(up, dim=1))


def decoder(backbone: str, channels: list[int]) -> nn.Module:
    """HRNetV2's head over the branches (the same for every HRNet)."""
    return HRNetV2Head(channels)
