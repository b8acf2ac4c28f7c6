"""Whole images at the evaluation height, for mining and evaluation (`EvalSet`: labels at full
resolution; `make_eval_loader`, `iter_batches`)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from uniseg.errors import DataError
from uniseg.model.inputs import eval_image
from uniseg.shards import ShardReader


class EvalSet(Dataset):
    """Items: (image float [3, h, w] resized to `height` (0 = as stored), label uint8 [H, W] label-space
    indices at the stored resolution, world uint8 [H, W] or empty [0, 0], key)."""

    def __init__(self, shard_dir: str | Path, split: str, height: int = 0, limit: int = 0):
        self.reader = ShardReader(shard_dir)
        self.rows = self.reader.indices(split)
        if not self.rows:
            raise DataError(f"{shard_dir}: no '{split}' samples to evaluate")
        if limit:
            self.rows = self.rows[:limit]
        self.height = height
        self.classes = self.reader.meta.classes

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        sample = self.reader.read(self.rows[i])
        image = torch.from_numpy(sample.image).permute(2, 0, 1).contiguous()
        world = (
            torch.from_numpy(sample.world)
            if sample.world is not None
            else torch.empty(0, 0, dtype=torch.uint8)
        )
        return eval_image(image, self.height), torch.from_numpy(sample.label.copy()), world, sample.key


def collate_same_size(batch):
    """Stack images that share a size (a dataset's images usually do); lists otherwise."""
    images, labels, worlds, keys = zip(*batch, strict=True)
    if len({tuple(x.shape) for x in images}) == 1 and len({tuple(y.shape) for y in labels}) == 1:
        return torch.stack(images), torch.stack(labels), list(worlds), list(keys)
    return list(images), list(labels), list(worlds), list(keys)


def make_eval_loader(dataset: EvalSet, batch_size: int, workers: int = 0) -> DataLoader:
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_same_size
    )


def iter_batches(loader: DataLoader):
    """Yield (images [b,3,h,w], labels [b,H,W], worlds, keys) with stacked tensors, splitting the
    batches that `collate_same_size` could not stack into single images."""
    for images, labels, worlds, keys in loader:
        if isinstance(images, torch.Tensor):
            yield images, labels, worlds, keys
        else:
            for x, y, w, k in zip(images, labels, worlds, keys, strict=True):
                yield x[None], y[None], [w], [k]
