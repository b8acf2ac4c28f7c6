"""Class colours for label maps and legends.

Known class names get the Cityscapes/Mapillary-like colours people are used to; any other name gets a
stable colour derived from its name, so a class has the same colour in every figure and every label space.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from uniseg import IGNORE

_KNOWN = {
    "road": (128, 64, 128),
    "sidewalk": (244, 35, 232),
    "building": (70, 70, 70),
    "wall": (102, 102, 156),
    "fence": (190, 153, 153),
    "pole": (153, 153, 153),
    "traffic light": (250, 170, 30),
    "traffic sign": (220, 220, 0),
    "traffic sign (back)": (192, 192, 192),
    "vegetation": (107, 142, 35),
    "terrain": (152, 251, 152),
    "sky": (70, 130, 180),
    "person": (220, 20, 60),
    "rider": (255, 0, 0),
    "bicyclist": (255, 0, 100),
    "motorcyclist": (255, 0, 200),
    "car": (0, 0, 142),
    "truck": (0, 0, 70),
    "bus": (0, 60, 100),
    "caravan": (0, 0, 90),
    "trailer": (0, 0, 110),
    "train": (0, 80, 100),
    "motorcycle": (0, 0, 230),
    "bicycle": (119, 11, 32),
    "autorickshaw": (255, 204, 54),
    "curb": (196, 196, 196),
    "lane marking - general": (255, 255, 255),
    "crosswalk - plain": (200, 128, 128),
    "ground animal": (0, 192, 0),
    "parking": (250, 170, 160),
}


def colour_of(name: str) -> tuple[int, int, int]:
    """The RGB colour of a class name (stable across runs and label spaces)."""
    if name in _KNOWN:
        return _KNOWN[name]
    h = zlib.crc32(name.encode("utf-8"))
    return (64 + h % 192, 64 + (h >> 8) % 192, 64 + (h >> 16) % 192)


def palette(classes: Sequence[str]) -> np.ndarray:
    """uint8 [256, 3]: row k is the colour of classes[k]; unused rows (and 255 = ignore) are black."""
    table = np.zeros((256, 3), dtype=np.uint8)
    for k, name in enumerate(classes):
        table[k] = colour_of(name)
    return table


def colourise(label: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """label: uint8/int [H, W] indices into `classes` (255 = ignore) -> uint8 RGB [H, W, 3]."""
    lab = np.asarray(label)
    lab = np.where((lab < 0) | (lab > IGNORE), IGNORE, lab).astype(np.uint8)
    return palette(classes)[lab]


def legend_handles(classes: Sequence[str]):
    """matplotlib patches for a legend of `classes` (import kept local: matplotlib is slow to import)."""
    from matplotlib.patches import Patch

    return [Patch(facecolor=np.array(colour_of(c)) / 255.0, edgecolor="black", label=c) for c in classes]
