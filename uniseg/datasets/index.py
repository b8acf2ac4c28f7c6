"""The index of a real dataset: which of the user's files make up each split, read in place (written and
read here only). The download stage writes it beside dataset.json; the shard stage packs from it.

    data/raw/<name>/
      dataset.json      the dataset's DatasetMeta (layout.py): source "real", label space, split counts
      index.parquet     one row per sample: split, key, image, label (paths relative to the dataset's
                        folder, as bytes: file names need not be UTF-8), image_bytes, image_mtime_ns,
                        label_bytes, label_mtime_ns (each file's size and mtime when it was indexed);
                        file metadata `uniseg.root`: the dataset's folder (absolute)

Size and mtime rather than checksums: one stat per file is what a rescan of tens of GB can afford (DVC's
own state cache keys on the same), and every ordinary edit changes them. Labels stay in their official
encoding; the shard stage converts them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from uniseg.errors import DataError
from uniseg.fsio import atomic_path

INDEX = "index.parquet"
COLUMNS = ("split", "key", "image", "label", "image_bytes", "image_mtime_ns", "label_bytes", "label_mtime_ns")
_ROOT_KEY = b"uniseg.root"


@dataclass(frozen=True)
class SourceFiles:
    """One sample read in place; `*_stat` = (size in bytes, mtime in ns) when it was indexed."""

    key: str
    image: Path
    label: Path
    image_stat: tuple[int, int]
    label_stat: tuple[int, int]


def file_stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def write_index(
    folder: str | Path, root: Path, samples: Mapping[str, Sequence[tuple[str, Path, Path]]]
) -> None:
    """Write `<folder>/index.parquet` for {split: [(key, image, label)]} (paths under `root`), with each
    file's size and mtime now. Deterministic: the same files give the same bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(root).absolute()
    rows = []
    for split, pairs in samples.items():
        for key, image, label in pairs:
            rel = [os.fsencode(Path(p).absolute().relative_to(root).as_posix()) for p in (image, label)]
            rows.append((split, key, *rel, *file_stat(image), *file_stat(label)))
    types = [pa.string(), pa.string(), pa.binary(), pa.binary()] + [pa.int64()] * 4
    schema = pa.schema(list(zip(COLUMNS, types, strict=True)), metadata={_ROOT_KEY: os.fsencode(root)})
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in COLUMNS]
    table = pa.Table.from_arrays([pa.array(c, t) for c, t in zip(columns, types, strict=True)], schema=schema)
    with atomic_path(Path(folder) / INDEX) as tmp:
        pq.write_table(table, tmp)


def has_index(folder: str | Path) -> bool:
    return (Path(folder) / INDEX).is_file()


def read_index(folder: str | Path) -> dict[str, list[SourceFiles]]:
    """{split: [SourceFiles]} in the order written, paths resolved against the recorded root."""
    import pyarrow.parquet as pq

    path = Path(folder) / INDEX
    if not path.is_file():
        raise DataError(f"{path}: not found; run the download stage for this dataset first (dvc repro)")
    table = pq.read_table(path)
    root = Path(os.fsdecode((table.schema.metadata or {}).get(_ROOT_KEY, b"")))
    if not root.is_absolute():
        name = Path(folder).name
        raise DataError(f"{path}: records no dataset folder; rebuild it: dvc repro -f download@{name}")
    out: dict[str, list[SourceFiles]] = {}
    for r in table.to_pylist():
        out.setdefault(r["split"], []).append(
            SourceFiles(
                r["key"],
                root / os.fsdecode(r["image"]),
                root / os.fsdecode(r["label"]),
                (r["image_bytes"], r["image_mtime_ns"]),
                (r["label_bytes"], r["label_mtime_ns"]),
            )
        )
    return out
