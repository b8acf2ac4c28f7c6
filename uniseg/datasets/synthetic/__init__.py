"""The embedded benchmark: synthetic road-scene datasets that share one procedural world but label it
with the conventions (and label spaces) of the real datasets, so their label conflicts are real ones
and the truth about them is known.

A dataset = the world (world.py) + a labelling policy and style (policies/<name>.yaml). The world map is
kept next to every label (`<key>.world.png`), which is what lets evaluation score any image in any
dataset's label space and lets relation mining be checked against the truth (truth.py).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from uniseg import IGNORE
from uniseg.datasets.layout import DatasetMeta, write_meta
from uniseg.datasets.synthetic.appearance import render, render_negatives, world_colours, world_style
from uniseg.datasets.synthetic.policies import Policy, dataset_names, load_policy
from uniseg.datasets.synthetic.truth import (
    expected_relations,
    ground_truth_relations,
    label_conflicts,
    oracle_relations,
    outside_names,
)
from uniseg.datasets.synthetic.world import WORLD_CLASSES
from uniseg.fsio import atomic_dir

__all__ = [
    "WORLD_CLASSES",
    "dataset_names",
    "load_policy",
    "label_space",
    "world_to_space_lut",
    "generate_dataset",
    "expected_relations",
    "ground_truth_relations",
    "label_conflicts",
    "oracle_relations",
    "outside_names",
    "write_preview",
]


def label_space(name: str) -> list[str]:
    """The label space of a synthetic dataset (the classes its policy uses, in the real order)."""
    return list(load_policy(name).classes)


def world_to_space_lut(name: str | Policy, classes: Sequence[str] | None = None) -> np.ndarray:
    """uint8 [256]: world class id -> index in `classes` (default: the dataset's own label space) of
    the name the dataset gives it; IGNORE where the dataset leaves it unlabelled or `classes` lacks it."""
    policy = name if isinstance(name, Policy) else load_policy(name)
    classes = list(policy.classes if classes is None else classes)
    position = {c: i for i, c in enumerate(classes)}
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for w, world in enumerate(WORLD_CLASSES):
        target = policy.labels[world]
        if target is not None and target in position:
            lut[w] = position[target]
    return lut


def _split_seed(seed: int, name: str, split: str) -> int:
    return seed * 1_000_003 + zlib.crc32(f"{name}/{split}".encode())


def generate_dataset(name: str, out_dir: str | Path, params) -> DatasetMeta:
    """Render dataset `name` into the canonical layout (layout.py) at `out_dir`, atomically.

    Training datasets get train and val splits, test datasets a val split only (their test set).
    `params` is a SyntheticParams (seed = the world: scenes, style and colours; height, width,
    train_images, val_images, test_images, negative_images). A test set whose policy has `negatives`
    also gets negative frames in its split (render_negatives: void ground truth, world 255), listed in
    dataset.json. Deterministic by seed."""
    from uniseg import taxonomy

    policy = load_policy(name)
    splits = (
        {"train": params.train_images, "val": params.val_images}
        if policy.role == "train"
        else {"val": params.test_images}
    )
    style, colours = world_style(policy.style, params.seed, name), world_colours(params.seed)
    lut = world_to_space_lut(policy)
    fallbacks = taxonomy.dataset_info(policy.like).fallbacks if policy.like else {}
    with atomic_dir(out_dir) as tmp:
        for split, n in splits.items():
            folder = tmp / split
            folder.mkdir()
            seed = _split_seed(params.seed, name, split)
            images, worlds = render(style, n, seed, params.height, params.width, colours)
            for k in range(n):
                key = f"{name}_{split}_{k:05d}"
                Image.fromarray(images[k]).save(folder / f"{key}.png", optimize=False, compress_level=1)
                Image.fromarray(lut[worlds[k]]).save(folder / f"{key}.label.png", compress_level=1)
                Image.fromarray(worlds[k]).save(folder / f"{key}.world.png", compress_level=1)
        negatives = []
        if policy.negatives:
            seed = _split_seed(params.seed, name, "val")
            images = render_negatives(style, params.negative_images, seed, params.height, params.width)
            void = np.full((params.height, params.width), IGNORE, dtype=np.uint8)
            for k, image in enumerate(images):
                key = f"{name}_val_negative_{k:05d}"
                Image.fromarray(image).save(tmp / "val" / f"{key}.png", optimize=False, compress_level=1)
                Image.fromarray(void).save(tmp / "val" / f"{key}.label.png", compress_level=1)
                Image.fromarray(void).save(tmp / "val" / f"{key}.world.png", compress_level=1)
                negatives.append(key)
            splits["val"] += len(negatives)
        meta = DatasetMeta(
            name=name,
            source="synthetic",
            classes=list(policy.classes),
            splits=splits,
            fallbacks={c: f for c, f in fallbacks.items() if c in policy.classes},
            world_classes=list(WORLD_CLASSES),
            negatives=negatives,
        )
        write_meta(tmp, meta)
    return meta


def write_preview(
    name: str, out: str | Path, images: int = 4, seed: int = 0, height: int = 128, width: int = 256
) -> None:
    """A grid of `images` scenes of dataset `name` above their coloured label maps."""
    from uniseg.datasets.preview import write_grid

    policy = load_policy(name)
    style, colours = world_style(policy.style, seed, name), world_colours(seed)
    rgb, worlds = render(style, images, _split_seed(seed, name, "preview"), height, width, colours)
    lut = world_to_space_lut(policy)
    write_grid(
        list(rgb),
        [lut[w] for w in worlds],
        policy.classes,
        f"synthetic {name} (like {policy.like or 'custom'})",
        out,
    )
