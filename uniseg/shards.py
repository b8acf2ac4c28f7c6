"""Resized, validated datasets packed into shards that training reads fast.

Layout of `data/shards/<dataset>/`:

    dataset.json              the dataset's DatasetMeta (label space, world classes for synthetic data)
    <split>-NNNNN.arrow       Arrow IPC files; one record batch per sample: key, image (encoded bytes),
                              label (PNG, label-space indices, 255 = ignore), world (PNG or null)
    manifest.parquet          one row per sample: dataset, split, key, shard, row, height, width,
                              pixels (list: pixel count per label-space class, then ignore)
    skipped.json              samples skipped with data.skip_corrupt (empty list otherwise)

Why Arrow IPC with one record batch per sample: the file is memory-mapped and its footer indexes every
batch, so reading sample i touches only its own bytes (O(1), no scan, no whole-shard read), and a shard
is a few hundred MB instead of thousands of loose files that DVC would hash one by one. The images stay
encoded (JPEG/PNG), so shards are no bigger than the sources.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

from uniseg import IGNORE
from uniseg.datasets.layout import DatasetMeta, SampleFiles, list_samples, read_meta, write_meta
from uniseg.errors import DataError
from uniseg.fsio import atomic_dir

SCHEMA = pa.schema(
    [("key", pa.string()), ("image", pa.binary()), ("label", pa.binary()), ("world", pa.binary())]
)
MANIFEST = "manifest.parquet"


@dataclass(frozen=True)
class Sample:
    key: str
    split: str
    image: np.ndarray  # uint8 [H, W, 3]
    label: np.ndarray  # uint8 [H, W], label-space indices, 255 = ignore
    world: np.ndarray | None  # uint8 [H, W] world ids (synthetic data only)


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


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, format="JPEG", quality=95)
    else:
        img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _process(job: tuple[SampleFiles, int, int]) -> tuple[dict | None, str | None]:
    """Decode, validate, resize and re-encode one sample. Returns (record, None) or (None, error)."""
    files, short_side, num_classes = job
    try:
        image = _open_checked(files.image, "RGB")
        label = _open_checked(files.label, "L")
        world = _open_checked(files.world, "L") if files.world is not None else None
        if label.size != image.size:
            raise DataError(f"{files.label}: label size {label.size} differs from image size {image.size}")
        values = np.asarray(label)
        bad = values[(values != IGNORE) & (values >= num_classes)]
        if bad.size:
            raise DataError(
                f"{files.label}: label value {int(bad[0])} is not a class index (< {num_classes}) or 255"
            )
        size = _resize_size(*image.size, short_side)
        if size == image.size:
            image_bytes = files.image.read_bytes()  # already at the target size: keep the exact bytes
            label_bytes = files.label.read_bytes()
            world_bytes = files.world.read_bytes() if world is not None else None
        else:
            fmt = "JPEG" if files.image.suffix == ".jpg" else "PNG"
            # Image: antialiased bilinear (PIL filters the source when shrinking); labels: nearest.
            image_bytes = _encode(image.resize(size, Image.Resampling.BILINEAR), fmt)
            label = label.resize(size, Image.Resampling.NEAREST)
            values = np.asarray(label)
            label_bytes = _encode(label, "PNG")
            world_bytes = (
                _encode(world.resize(size, Image.Resampling.NEAREST), "PNG") if world is not None else None
            )
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
        return record, None
    except DataError as exc:
        return None, str(exc)


def write_shards(
    raw_dir: str | Path,
    out_dir: str | Path,
    short_side: int,
    images_per_shard: int = 256,
    workers: int = 1,
    skip_corrupt: bool = False,
    progress: bool = True,
) -> dict:
    """Resize every split of the canonical dataset at `raw_dir` (shorter side = `short_side`) into
    shards under `out_dir`, atomically. Returns {"images": n, "shards": n, "skipped": [...]}."""
    from tqdm import tqdm

    meta = read_meta(raw_dir)
    splits = {s: list_samples(raw_dir, s) for s in ("train", "val", "test")}
    splits = {s: v for s, v in splits.items() if v}
    if not splits:
        raise DataError(f"{raw_dir}: no samples in any split (train, val, test)")
    num_classes = len(meta.classes)
    rows, skipped, shard_count = [], [], 0
    with atomic_dir(out_dir) as tmp:
        ctx = get_context("fork") if workers > 1 else None
        pool = ctx.Pool(workers) if ctx else None
        try:
            for split, samples in splits.items():
                jobs = [(f, short_side, num_classes) for f in samples]
                chunk = max(
                    1, min(8, len(jobs) // (4 * workers))
                )  # small chunks keep both workers busy to the end
                results = pool.imap(_process, jobs, chunksize=chunk) if pool else map(_process, jobs)
                bar = tqdm(results, total=len(jobs), desc=f"shard {meta.name}/{split}", disable=not progress)
                writer, shard_name, row = None, None, 0
                for record, error in bar:
                    if error is not None:
                        if not skip_corrupt:
                            raise DataError(error + " (set data.skip_corrupt: true to skip such samples)")
                        skipped.append(error)
                        continue
                    if writer is None or row == images_per_shard:
                        if writer is not None:
                            writer.close()
                        shard_name = f"{split}-{shard_count:05d}.arrow"
                        shard_count += 1
                        writer, row = pa.ipc.new_file(str(tmp / shard_name), SCHEMA), 0
                    batch = {k: [record[k]] for k in SCHEMA.names}
                    writer.write_batch(pa.record_batch(batch, schema=SCHEMA))
                    rows.append(
                        {
                            "dataset": meta.name,
                            "split": split,
                            "key": record["key"],
                            "shard": shard_name,
                            "row": row,
                            "height": record["height"],
                            "width": record["width"],
                            "pixels": record["pixels"],
                        }
                    )
                    row += 1
                if writer is not None:
                    writer.close()
        finally:
            if pool:
                pool.close()
                pool.join()
        if not rows:
            raise DataError(f"{raw_dir}: every sample was skipped as corrupt; nothing to shard")
        counts = pd.Series([r["split"] for r in rows]).value_counts().to_dict()
        write_meta(
            tmp, DatasetMeta(meta.name, meta.source, meta.classes, counts, meta.fallbacks, meta.world_classes)
        )
        table = pa.Table.from_pylist(rows)
        pq.write_table(table, tmp / MANIFEST)
        (tmp / "skipped.json").write_text(json.dumps(skipped, indent=1), encoding="utf-8")
    return {"images": len(rows), "shards": shard_count, "skipped": skipped}


def _decode(data: bytes, mode: str) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(data)).convert(mode))


class ShardReader:
    """Random access to the samples of one dataset's shards. Safe to use from DataLoader workers: the
    memory maps are opened lazily in each process."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        manifest = self.directory / MANIFEST
        if not manifest.is_file():
            raise DataError(
                f"{self.directory}: no {MANIFEST}; run the shard stage for this dataset (dvc repro)"
            )
        self.meta = read_meta(self.directory)
        self.manifest = pd.read_parquet(manifest)
        self._files: dict[str, pa.ipc.RecordBatchFileReader] = {}
        self._pid = None

    def __len__(self) -> int:
        return len(self.manifest)

    def indices(self, split: str) -> list[int]:
        """Manifest rows of `split`, in key order."""
        return self.manifest.index[self.manifest["split"] == split].tolist()

    def _file(self, shard: str):
        if self._pid != os.getpid():  # forked into a worker: never share memory maps across processes
            self._files, self._pid = {}, os.getpid()
        if shard not in self._files:
            self._files[shard] = pa.ipc.open_file(pa.memory_map(str(self.directory / shard), "r"))
        return self._files[shard]

    def read_raw(self, i: int) -> dict:
        entry = self.manifest.iloc[i]
        batch = self._file(entry["shard"]).get_batch(int(entry["row"]))
        return {name: batch.column(name)[0].as_py() for name in SCHEMA.names}

    def read(self, i: int) -> Sample:
        raw = self.read_raw(i)
        world = _decode(raw["world"], "L") if raw["world"] is not None else None
        split = self.manifest.iloc[i]["split"]
        return Sample(raw["key"], split, _decode(raw["image"], "RGB"), _decode(raw["label"], "L"), world)
