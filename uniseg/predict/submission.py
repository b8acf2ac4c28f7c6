"""A benchmark submission: one label PNG per test image, zipped (WildDash 2's semantic segmentation server).

Format, from the benchmark's published material as far as it goes (docs/benchmark.md, "WildDash 2"):
the official label policy's ids (wd2_unified_label_policy.json: the 26 evaluated classes keep their WD2
label ids, road 7, sidewalk 8, ..., road-marking 38; 0 is unlabelled, void), one single-channel 8-bit PNG
per test image named `<image stem>.png` at the image's own resolution, flat at the zip's root. The server
maps ground truth and predictions through the same policy, so predicting only the 26 evaluated ids and 0
is the safe subset; an abstained pixel is 0. The official submission page could not be read here: the
encoding is the one the winners of the Robust Vision Challenge submitted (third-party code), checked
against the policy file — confirm on the benchmark's site before uploading.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

from uniseg import IGNORE
from uniseg.errors import UserError, choices
from uniseg.fsio import atomic_path

VOID = 0  # "unlabeled" in the WD2 policy
SUBMITTABLE = ("wilddash2",)  # label spaces whose benchmark takes a submission of this format


def submission_ids(label_space: str) -> np.ndarray:
    """uint8 [256]: label-space index -> the id the benchmark expects (each class's official label id:
    the lowest raw id its table maps to it, which is the policy's evaluated id), IGNORE (void) -> 0."""
    from uniseg import taxonomy

    if label_space not in SUBMITTABLE:
        raise UserError(
            f"--submission: no submission format for {label_space!r}; valid: {choices(SUBMITTABLE)}"
        )
    info = taxonomy.dataset_info(label_space)
    lut = np.full(256, VOID, dtype=np.uint8)
    for k, name in enumerate(info.classes):
        lut[k] = min(int(r.value) for r in info.rows if r.name == name)
    lut[IGNORE] = VOID
    return lut


def write_submission(labels: Iterable[tuple[str, np.ndarray]], label_space: str, out: Path) -> int:
    """Zip `<stem>.png` for every (stem, uint8 [H, W] label-space indices, 255 = void) into `out`,
    atomically: a failure leaves no zip. Returns the number of images."""
    lut = submission_ids(label_space)
    n = 0
    with atomic_path(out, suffix=".zip") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for stem, label in labels:
            buffer = BytesIO()
            Image.fromarray(lut[label]).save(buffer, format="PNG")
            zf.writestr(f"{stem}.png", buffer.getvalue())
            n += 1
    return n
