"""The shard format: datasets packed (packing.py) into files that training reads fast — written
(`ShardWriter`) and read (`ShardReader`) here only.

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
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from uniseg.datasets.layout import DatasetMeta, read_meta, write_meta
from uniseg.errors import DataError

SCHEMA = pa.schema(
    [("key", pa.string()), ("image", pa.binary()), ("label", pa.binary()), ("world", pa.binary())]
)
MANIFEST = "manifest.parquet"
MANIFEST_COLUMNS = ("split", "key", "shard", "row", "height", "width", "pixels")  # after "dataset"


@dataclass(frozen=True)
class Sample:
    key: str
    split: str
    image: np.ndarray  # uint8 [H, W, 3]
    label: np.ndarray  # uint8 [H, W], label-space indices, 255 = ignore
    world: np.ndarray | None  # uint8 [H, W] world ids (synthetic data only)


class ShardWriter:
    """Writes one dataset's shards into a folder: `add` a sample record per call (split by split), then
    `close` writes the manifest, dataset.json and skipped.json. Records: {"key", "image" (encoded bytes),
    "label" (PNG bytes), "world" (PNG bytes or None), "height", "width", "pixels" (list)}."""

    def __init__(self, folder: Path, images_per_shard: int):
        self.folder, self.images_per_shard = Path(folder), images_per_shard
        self.rows: list[dict] = []
        self.shards = 0
        self._writer, self._split, self._name, self._row = None, None, None, 0

    def add(self, split: str, record: dict) -> None:
        if self._writer is None or self._row == self.images_per_shard or split != self._split:
            self._close_shard()
            self._name = f"{split}-{self.shards:05d}.arrow"
            self.shards += 1
            self._writer, self._split, self._row = (
                pa.ipc.new_file(str(self.folder / self._name), SCHEMA),
                split,
                0,
            )
        self._writer.write_batch(pa.record_batch({k: [record[k]] for k in SCHEMA.names}, schema=SCHEMA))
        keep = ("key", "height", "width", "pixels")
        self.rows.append(
            {"split": split, "shard": self._name, "row": self._row, **{k: record[k] for k in keep}}
        )
        self._row += 1

    def _close_shard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def close(self, meta: DatasetMeta, skipped: list[str]) -> None:
        self._close_shard()
        counts = pd.Series([r["split"] for r in self.rows]).value_counts().to_dict()
        write_meta(self.folder, replace(meta, splits=counts))
        rows = [{"dataset": meta.name, **{k: r[k] for k in MANIFEST_COLUMNS}} for r in self.rows]
        pq.write_table(pa.Table.from_pylist(rows), self.folder / MANIFEST)
        (self.folder / "skipped.json").write_text(json.dumps(skipped, indent=1), encoding="utf-8")


def _decode(data: bytes, mode: str) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    # convert() to the mode the image already has would only copy it (2 ms for a 1080p RGB image).
    return np.array(image if image.mode == mode else image.convert(mode))


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
