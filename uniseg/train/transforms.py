"""Training and evaluation transforms: torchvision transforms v2 on image + tv_tensors.Mask together.

Geometric transforms move the mask with the image (nearest interpolation for the mask); every pixel
that a crop pads or a transform invents is filled with 255 (ignore), never 0, which is a real class.
"""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F_v2

from uniseg import IGNORE

FILL = {tv_tensors.Image: 0, tv_tensors.Mask: IGNORE}


def train_transform(
    short_side: int, crop: tuple[int, int], scale: tuple[float, float], resize: str = "image"
) -> v2.Compose:
    """Random scale (shorter side x U(scale)), random crop `crop` = (h, w), horizontal flip, on uint8
    images: the batch is normalised on the device (`normalise_batch`), so a worker hands over a quarter
    of the bytes.

    short_side: the dataset's shorter side in its shards (all images of a shard set share it).
    resize: "image" resizes the whole image, then crops; "window" resizes only the part of the image that
    the crop keeps (`WindowResizeCrop`: the same distribution of scales and crops, far less work when the
    image is much larger than the crop)."""
    lo, hi = max(1, round(short_side * scale[0])), max(2, round(short_side * scale[1]) + 1)
    if resize == "window":
        geometric = [WindowResizeCrop(lo, hi, crop)]
    else:
        geometric = [
            v2.RandomResize(lo, hi, antialias=True),
            v2.RandomCrop(crop, pad_if_needed=True, fill=FILL),
        ]
    return v2.Compose([*geometric, v2.RandomHorizontalFlip()])


class WindowResizeCrop(v2.Transform):
    """`RandomResize(lo, hi)` then `RandomCrop(crop, pad_if_needed=True)`, computing only the crop.

    The shorter side and the crop's position are drawn as those two transforms draw them (the same random
    numbers in the same order); then only the source region under the crop window is resized
    (`resized_crop`: bilinear with antialiasing for the image, nearest for the mask) and the rest of the
    window is padded with FILL. The source region is rounded to whole pixels, so the window's content can
    sit up to half a source pixel from where resizing the whole image would put it; the scale differs by
    that rounding over the window (under 0.2 % for a 713-pixel crop)."""

    def __init__(self, min_size: int, max_size: int, crop: tuple[int, int]):
        super().__init__()
        self.min_size, self.max_size, self.crop = min_size, max_size, tuple(crop)

    def make_params(self, flat_inputs: list) -> dict:
        height, width = v2.query_size(flat_inputs)
        short = int(torch.randint(self.min_size, self.max_size, ()))
        # The resized size as F.resize(size=[short]) computes it.
        if height <= width:
            new_h, new_w = short, int(short * width / height)
        else:
            new_h, new_w = int(short * height / width), short
        boxes = []
        for size, new, crop in ((height, new_h, self.crop[0]), (width, new_w, self.crop[1])):
            pad = max(0, crop - new)  # RandomCrop(pad_if_needed) pads both sides by the shortfall
            padded = new + 2 * pad
            start = int(torch.randint(0, padded - crop + 1, ())) if padded > crop else 0
            lo, hi = max(start - pad, 0), min(start - pad + crop, new)  # the window, resized coordinates
            src_lo = min(round(lo * size / new), size - 1)
            src_hi = max(round(hi * size / new), src_lo + 1)
            boxes.append((src_lo, src_hi - src_lo, hi - lo, lo - (start - pad)))
        return {"rows": boxes[0], "cols": boxes[1]}

    def transform(self, inpt, params: dict):
        (top, height, out_h, pad_top), (left, width, out_w, pad_left) = params["rows"], params["cols"]
        out = self._call_kernel(
            F_v2.resized_crop,
            inpt,
            top=top,
            left=left,
            height=height,
            width=width,
            size=[out_h, out_w],
            interpolation=v2.InterpolationMode.BILINEAR,
            antialias=True,
        )
        bottom, right = self.crop[0] - out_h - pad_top, self.crop[1] - out_w - pad_left
        if pad_top or pad_left or bottom or right:
            fill = FILL.get(type(inpt), 0)
            out = self._call_kernel(F_v2.pad, out, padding=[pad_left, pad_top, right, bottom], fill=fill)
        return out


def to_tv(image, label) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """uint8 HWC numpy image + HW label -> tv_tensors (CHW image, HW mask)."""
    img = tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1).contiguous())
    return img, tv_tensors.Mask(torch.from_numpy(label.copy()))
