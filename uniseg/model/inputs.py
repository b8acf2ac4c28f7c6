"""What the model is fed: images normalised with the encoder's statistics (`normalise_batch` on a
training batch where it is, `normalise` per image; `eval_image` at the evaluation height)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as F_v2

from uniseg.model.backbones import MEAN, STD


def normalise_batch(images: torch.Tensor) -> torch.Tensor:
    """uint8 training batch [B, 3, h, w] -> float32, scaled to [0, 1] and normalised with the ImageNet
    statistics: what `ToDtype(scale=True)` and `Normalize` compute per image, on the whole batch where it
    is (the device)."""
    return F_v2.normalize(F_v2.to_dtype(images, torch.float32, scale=True), MEAN, STD)


def normalise(image: torch.Tensor) -> torch.Tensor:
    """uint8 [..., 3, H, W] -> float, scaled to [0, 1] and normalised with the ImageNet statistics."""
    mean = torch.tensor(MEAN, device=image.device).view(3, 1, 1)
    std = torch.tensor(STD, device=image.device).view(3, 1, 1)
    return (image.float() / 255.0 - mean) / std


def eval_image(image: torch.Tensor, height: int) -> torch.Tensor:
    """uint8 [3, H, W] -> normalised float [3, height, W*height/H] (no crop: evaluation sees the whole
    image; 0 keeps the original size)."""
    x = normalise(image)
    if height and height != x.shape[-2]:
        width = max(1, round(x.shape[-1] * height / x.shape[-2]))
        x = F.interpolate(
            x[None], size=(height, width), mode="bilinear", align_corners=False, antialias=True
        )[0]
    return x
