"""COCO panoptic ground truth as semantic label ids (WildDash 2's public labels).

A mask PNG's colour is a segment id, id = R + 256 G + 256² B (0: no segment); the segments file
(panoptic.json) lists, per mask file, each segment's category id — for WildDash 2 a WD2 label id. The
semantic id of a pixel is its segment's category, 0 (unlabelled) where there is no segment. Facts from the
official wilddash_scripts `pano2sem.py` (MIT); the conversion is written here.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
from PIL import Image

from uniseg.errors import DataError


@functools.cache
def _segments(path: Path) -> dict[str, dict[int, int]]:
    """A COCO panoptic file's {mask file name: {segment id: category id}}."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {
            a["file_name"]: {s["id"]: s["category_id"] for s in a["segments_info"]}
            for a in data["annotations"]
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a COCO panoptic file ({exc})") from None


def panoptic_ids(path: Path, img: Image.Image, segments_file: Path) -> np.ndarray:
    """Raw label ids int64 [H, W] of the panoptic mask `img` (read from `path`): each segment's category
    id, 0 where there is no segment; DataError for a mask or segment the segments file does not list."""
    segments = _segments(segments_file)
    if path.name not in segments:
        raise DataError(f"{path}: has no entry in {segments_file}")
    rgb = np.asarray(img.convert("RGB"), dtype=np.int64)
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    table = segments[path.name]
    values, inverse = np.unique(ids, return_inverse=True)
    unknown = [v for v in values.tolist() if v and v not in table]
    if unknown:
        raise DataError(f"{path}: segment {unknown[0]} is not in {segments_file}")
    category = np.asarray([table.get(v, 0) for v in values.tolist()], dtype=np.int64)
    return category[inverse.reshape(ids.shape)]
