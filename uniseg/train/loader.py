"""The multi-dataset training set (the training datasets concatenated, each sample tagged with its
dataset id) and the evaluation set (whole images at the evaluation height, labels at full resolution).

Determinism: the sampler yields (index, sample_seed) pairs computed from (seed, epoch, position), and
each sample's augmentation is drawn from its own seed. So the batches of iteration n are the same
whatever the number of workers, and a resumed run sees exactly the data it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from uniseg.errors import DataError
from uniseg.shards import ShardReader
from uniseg.taxonomy import space_to_union_lut
from uniseg.train.transforms import to_tv, train_transform


class TrainSet(Dataset):
    """Items: (image uint8 [3, h, w], label uint8 [h, w] union indices / 255, dataset id int). The
    batch is normalised on the device (transforms.normalise_batch); the labels are valid by construction
    (the label-space -> union table maps every byte value to a union index or 255)."""

    def __init__(
        self,
        shard_dirs: Sequence[str | Path],
        union: Sequence[str],
        crop: tuple[int, int],
        scale: tuple[float, float],
        split: str = "train",
        resize: str = "image",
    ):
        self.readers = [ShardReader(d) for d in shard_dirs]
        self.union = list(union)
        self.luts = [torch.from_numpy(space_to_union_lut(r.meta.classes, self.union)) for r in self.readers]
        self.items: list[tuple[int, int]] = []  # (dataset id, manifest row)
        self.transforms = []
        for d, reader in enumerate(self.readers):
            rows = reader.indices(split)
            if not rows:
                raise DataError(f"{reader.directory}: no '{split}' samples to train on")
            self.items += [(d, r) for r in rows]
            short = int(reader.manifest[["height", "width"]].min(axis=1).median())
            self.transforms.append(train_transform(short, crop, scale, resize))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, job: tuple[int, int] | int):
        index, seed = job if isinstance(job, tuple) else (job, index_seed(0, job))
        d, row = self.items[index]
        sample = self.readers[d].read(row)
        image, mask = to_tv(sample.image, sample.label)
        torch.manual_seed(seed)
        image, mask = self.transforms[d](image, mask)
        return image, self.luts[d][mask.long()], d


def index_seed(seed: int, position: int) -> int:
    return (seed * 1_000_003 + position * 7919) % (2**31 - 1)


class EpochSampler(Sampler):
    """Yields (index, sample seed) for one epoch: a permutation drawn from (seed, epoch), optionally
    weighted per dataset (sampling with replacement), sharded across DDP ranks, starting at `skip`."""

    def __init__(self, dataset_ids: Sequence[int], seed: int, weights: Sequence[float] = (), rank=0, world=1):
        self.ids = np.asarray(dataset_ids)
        self.seed, self.rank, self.world = seed, rank, world
        self.epoch, self.skip = 0, 0
        self.weights = None
        if len(weights):
            sizes = np.bincount(self.ids, minlength=len(weights))
            per_item = np.asarray(weights, dtype=np.float64)[self.ids] / np.maximum(sizes[self.ids], 1)
            self.weights = torch.from_numpy(per_item / per_item.sum())
        self.per_rank = len(self.ids) // world

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __len__(self) -> int:
        return self.per_rank - self.skip

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        n = len(self.ids)
        if self.weights is None:
            order = torch.randperm(n, generator=g)
        else:
            order = torch.multinomial(self.weights, n, replacement=True, generator=g)
        mine = order[self.rank : self.per_rank * self.world : self.world]
        for pos in range(self.skip, self.per_rank):
            global_pos = self.epoch * n + pos * self.world + self.rank
            yield int(mine[pos]), index_seed(self.seed, global_pos)


def make_train_loader(
    dataset: TrainSet,
    batch_size: int,
    workers: int,
    seed: int,
    weights: Sequence[float] = (),
    rank: int = 0,
    world: int = 1,
    pin_memory: bool = False,
) -> tuple[DataLoader, EpochSampler]:
    """A DataLoader over one epoch of `dataset` (per-process batch size) and its sampler; call
    sampler.set_epoch(e, skip) before iterating each epoch."""
    ids = [d for d, _ in dataset.items]
    sampler = EpochSampler(ids, seed, weights, rank, world)
    if sampler.per_rank < batch_size:
        raise DataError(f"{len(ids)} training images are fewer than one batch ({batch_size} per process)")
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
        pin_memory=pin_memory,
        prefetch_factor=4 if workers > 0 else None,
    )
    return loader, sampler
