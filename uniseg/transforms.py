"""Training and evaluation transforms: torchvision transforms v2 on image + tv_tensors.Mask together.

Geometric transforms move the mask with the image (nearest interpolation for the mask); every pixel
that a crop pads or a transform invents is filled with 255 (ignore), never 0, which is a real class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2

from uniseg import IGNORE
from uniseg.backbones import MEAN, STD

FILL = {tv_tensors.Image: 0, tv_tensors.Mask: IGNORE}


def train_transform(short_side: int, crop: tuple[int, int], scale: tuple[float, float]) -> v2.Compose:
    """Random scale (shorter side x U(scale)), random crop `crop` = (h, w), horizontal flip, normalise.

    short_side: the dataset's shorter side in its shards (all images of a shard set share it)."""
    lo, hi = max(1, round(short_side * scale[0])), max(2, round(short_side * scale[1]) + 1)
    return v2.Compose(
        [
            v2.RandomResize(lo, hi, antialias=True),
            v2.RandomCrop(crop, pad_if_needed=True, fill=FILL),
            v2.RandomHorizontalFlip(),
            v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
            v2.Normalize(MEAN, STD),
        ]
    )


def to_tv(image, label) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """uint8 HWC numpy image + HW label -> tv_tensors (CHW image, HW mask)."""
    img = tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1).contiguous())
    return img, tv_tensors.Mask(torch.from_numpy(label.copy()))


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
