"""The shard samples behind the predictions the evaluation stored for the report's panels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def stored_samples(stored: dict[str, dict], datasets: Sequence[str], shards: Path):
    """(dataset, key, shard sample, label space) of every image some model's stored predictions name
    (stored: {model: {dataset: {key: ...}}}), in dataset order, for the report's panels."""
    from uniseg.shards import ShardReader

    for name in datasets:
        keys = list(dict.fromkeys(k for m in stored.values() for k in m.get(name, {})))
        if not keys:
            continue
        reader = ShardReader(shards / name)
        index = dict(zip(reader.manifest["key"], reader.manifest.index, strict=True))
        for key in keys:
            yield name, key, reader.read(index[key]), list(reader.meta.classes)
