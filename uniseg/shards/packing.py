"""Packing a dataset into shards: decode and validate each sample, resize it (shorter side =
shard.short_side; labels nearest), re-encode it, in worker processes, and hand the records to the shard
format (shards.py) — deterministically (byte-identical output for the same input) and atomically.

Two inputs: a dataset in the canonical layout (synthetic data: labels are label-space indices already),
or the index of a real dataset (index.py): its files are read in place, checked against the size and
mtime they had when indexed, and their labels converted from the official encoding while packing. A
real test set keeps its labels at their original resolution (only the image is resized): evaluation
scores at the label's resolution.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from uniseg import IGNORE, taxonomy
from uniseg.datasets.index import SourceFiles, file_stat, has_index, read_index
from uniseg.datasets.layout import SPLITS, SampleFiles, list_samples, read_meta, write_meta
from uniseg.datasets.real import read_sample
from uniseg.errors import DataError
from uniseg.fsio import atomic_dir
from uniseg.shards import ShardWriter


class SourceChanged(DataError):
    """A real dataset's file differs from its index: never skipped, the index must be rebuilt."""


def _open_checked(path: Path, mode: str) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot be decoded ({exc})") from None
    if mode == "L" and img.mode not in ("L", "P"):
        raise DataError(f"{path}: label must be a single-channel PNG (mode L), got mode {img.mode}")
    return img.convert(mode)


def _resize_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    scale = short_side / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


JPEG_QUALITY = 95  # shard.image_format: jpeg (and JPEG sources that are resized)


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    else:
        img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@dataclass(frozen=True)
class _Job:
    files: SampleFiles | SourceFiles
    short_side: int
    num_classes: int
    dataset: str | None = None  # real data: convert labels from this dataset's official encoding
    resize_label: bool = True  # False: keep the label at its original resolution (real test sets)
    jpeg: bool = False  # store the image as JPEG whatever the source's codec (training images)


def _check_unchanged(files: SourceFiles, dataset: str) -> None:
    for path, indexed in ((files.image, files.image_stat), (files.label, files.label_stat)):
        try:
            now = file_stat(path)
        except OSError:
            now = None
        if now != indexed:
            what = "is gone" if now is None else "changed (size or mtime)"
            raise SourceChanged(
                f"{path}: {what} since download@{dataset} indexed it; rebuild the index: dvc repro -f download@{dataset}"
            )


def _load(job: _Job) -> tuple[Image.Image, Image.Image, Image.Image | None]:
    files = job.files
    if job.dataset is not None:  # real data, read in place
        _check_unchanged(files, job.dataset)
        image, label = read_sample(job.dataset, files.image, files.label)
        return image, Image.fromarray(label), None
    image = _open_checked(files.image, "RGB")
    label = _open_checked(files.label, "L")
    world = _open_checked(files.world, "L") if files.world is not None else None
    return image, label, world


def _process(job: _Job) -> tuple[dict | None, str | None, bool]:
    """Decode, validate, resize and re-encode one sample. Returns (record, None, _) or (None, error,
    skippable)."""
    files, short_side, num_classes = job.files, job.short_side, job.num_classes
    try:
        image, label, world = _load(job)
        if label.size != image.size:
            raise DataError(f"{files.label}: label size {label.size} differs from image size {image.size}")
        values = np.asarray(label)
        bad = values[(values != IGNORE) & (values >= num_classes)]
        if bad.size:
            raise DataError(
                f"{files.label}: label value {int(bad[0])} is not a class index (< {num_classes}) or 255"
            )
        size = _resize_size(*image.size, short_side)
        label_size = size if job.resize_label else label.size
        is_jpeg = files.image.suffix.lower() in (".jpg", ".jpeg")
        fmt = "JPEG" if job.jpeg or is_jpeg else "PNG"
        if size == image.size and (fmt == "JPEG") == is_jpeg:
            image_bytes = files.image.read_bytes()  # already at the target size and codec: the exact bytes
        else:  # antialiased bilinear (PIL filters the source when shrinking)
            image_bytes = _encode(
                image if size == image.size else image.resize(size, Image.Resampling.BILINEAR), fmt
            )
        if label_size == label.size and job.dataset is None:
            label_bytes = files.label.read_bytes()  # canonical layout: label-space indices already
        else:  # labels: nearest
            if label_size != label.size:
                label = label.resize(label_size, Image.Resampling.NEAREST)
            label_bytes = _encode(label, "PNG")
        values = np.asarray(label)
        world_bytes = None
        if world is not None and world.size == size:
            world_bytes = files.world.read_bytes()
        elif world is not None:
            world_bytes = _encode(world.resize(size, Image.Resampling.NEAREST), "PNG")
        pixels = np.bincount(np.minimum(values.ravel(), num_classes), minlength=num_classes + 1)
        record = {
            "key": files.key,
            "image": image_bytes,
            "label": label_bytes,
            "world": world_bytes,
            "height": size[1],
            "width": size[0],
            "pixels": pixels.tolist(),
        }
        return record, None, True
    except DataError as exc:
        return None, str(exc), not isinstance(exc, SourceChanged)


def write_shards(
    raw_dir: str | Path,
    out_dir: str | Path,
    short_side: int,
    images_per_shard: int = 256,
    workers: int = 1,
    skip_corrupt: bool = False,
    progress: bool = True,
    image_format: str = "source",
) -> dict:
    """Resize every split of the dataset at `raw_dir` (canonical layout, or a real dataset's index;
    shorter side = `short_side`) into shards under `out_dir`, atomically; `image_format` "jpeg" stores
    the train split's images as JPEG (shard.image_format). Returns {"images": n, "shards": n,
    "skipped": [...]}."""
    from tqdm import tqdm

    meta = read_meta(raw_dir)
    if meta.source == "absent":  # an optional dataset that was not found: passed on, nothing to pack
        with atomic_dir(out_dir) as tmp:
            write_meta(tmp, meta)
        return {"images": 0, "shards": 0, "skipped": []}
    num_classes = len(meta.classes)
    job: dict = {"short_side": short_side, "num_classes": num_classes}
    if has_index(raw_dir):
        index = read_index(raw_dir)
        splits = {s: index.get(s, []) for s in SPLITS}
        job |= {"dataset": meta.name, "resize_label": taxonomy.dataset_info(meta.name).role != "test"}
    else:
        splits = {s: list_samples(raw_dir, s) for s in SPLITS}
    splits = {s: v for s, v in splits.items() if v}
    if not splits:
        raise DataError(f"{raw_dir}: no samples in any split (train, val, test)")
    skipped: list[str] = []
    with atomic_dir(out_dir) as tmp:
        shards = ShardWriter(tmp, images_per_shard)
        ctx = get_context("fork") if workers > 1 else None
        pool = ctx.Pool(workers) if ctx else None
        try:
            for split, samples in splits.items():
                jobs = [_Job(f, **job, jpeg=image_format == "jpeg" and split == "train") for f in samples]
                # Small chunks keep every worker busy to the end.
                chunk = max(1, min(8, len(jobs) // (4 * workers)))
                results = pool.imap(_process, jobs, chunksize=chunk) if pool else map(_process, jobs)
                bar = tqdm(results, total=len(jobs), desc=f"shard {meta.name}/{split}", disable=not progress)
                for record, error, skippable in bar:
                    if error is not None:
                        if not skippable:
                            raise DataError(error)
                        if not skip_corrupt:
                            raise DataError(error + " (set data.skip_corrupt: true to skip such samples)")
                        skipped.append(error)
                        continue
                    shards.add(split, record)
        finally:
            if pool:
                pool.close()
                pool.join()
        if not shards.rows:
            raise DataError(f"{raw_dir}: every sample was skipped as corrupt; nothing to shard")
        shards.close(meta, skipped)
    return {"images": len(shards.rows), "shards": shards.shards, "skipped": skipped}
