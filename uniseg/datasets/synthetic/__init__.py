"""The embedded benchmark: synthetic road-scene datasets that share one procedural world but label it
with the conventions (and label spaces) of the real datasets, so their label conflicts are real ones
and the truth about them is known.

A dataset = the world (world.py) + a labelling policy and style (policies/<name>.yaml). The world map is
kept next to every label (`<key>.world.png`), which is what lets evaluation score any image in any
dataset's label space and lets relation mining be checked against `expected_relations`.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from uniseg import IGNORE
from uniseg.datasets.layout import DatasetMeta, write_meta
from uniseg.datasets.synthetic.appearance import render, world_colours, world_style
from uniseg.datasets.synthetic.policies import Policy, dataset_names, load_policy
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
    train_images, val_images, test_images). Deterministic by seed."""
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
        meta = DatasetMeta(
            name=name,
            source="synthetic",
            classes=list(policy.classes),
            splits=splits,
            fallbacks={c: f for c, f in fallbacks.items() if c in policy.classes},
            world_classes=list(WORLD_CLASSES),
        )
        write_meta(tmp, meta)
    return meta


def expected_relations(datasets: Sequence[str]) -> list[tuple[str, str, str, str]]:
    """The ground truth that relation mining should recover, from the policies.

    W_i(c) is the set of world classes that dataset i labels c. Class c of dataset i has the secondary
    class c' (a class of another dataset j, c' != c) when W_i(c) ⊆ W_j(c'): every pixel i calls c, j would
    call c' (e.g. Mapillary's bicyclist -> Cityscapes' rider, Mapillary's curb -> Cityscapes' sidewalk,
    Mapillary's ground animal -> IDD's person). A partial overlap (neither contains the other) is
    "ambiguous"; a c' strictly inside c (the reverse of a relation) is not one. Returns sorted
    (dataset i, primary c, secondary c', kind), kind "relation" or "ambiguous".
    """
    policies = {d: load_policy(d) for d in datasets}
    worlds = {
        d: {c: {w for w, n in p.labels.items() if n == c} for c in p.classes} for d, p in policies.items()
    }
    out: dict[tuple[str, str, str], str] = {}
    for i in datasets:
        for c, wc in worlds[i].items():
            for j in datasets:
                for c2, wc2 in worlds[j].items():
                    if j == i or c2 == c or not (wc & wc2):
                        continue
                    key = (i, c, c2)
                    if wc <= wc2:
                        out[key] = "relation"
                    elif not wc2 <= wc and out.get(key) != "relation":
                        out[key] = "ambiguous"
    return sorted((i, c, c2, kind) for (i, c, c2), kind in out.items())


def _world_sets(datasets: Sequence[str]) -> dict[str, dict[str, set[str]]]:
    """dataset -> class -> W(class), the world classes the dataset's policy names so."""
    policies = {d: load_policy(d) for d in datasets}
    return {
        d: {c: {w for w, n in p.labels.items() if n == c} for c in p.classes} for d, p in policies.items()
    }


def ground_truth_relations(
    datasets: Sequence[str],
) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """(truth, equivalent): the relations mining should recover (`expected_relations` of kind "relation")
    and those among them where the primary names exactly the secondary's world classes, W_i(c) = W_j(c')
    — two datasets naming the same pixels differently (IDD's rail track and the others' terrain). Of
    such a pair eq. 6 can give at most one direction (relation_scores.expressible_units)."""
    worlds = _world_sets(datasets)
    truth = [(i, c, c2) for i, c, c2, kind in expected_relations(datasets) if kind == "relation"]
    equivalent = [
        (i, c, c2) for i, c, c2 in truth if any(worlds[j].get(c2) == worlds[i][c] for j in datasets if j != i)
    ]
    return truth, equivalent


def label_conflicts(datasets: Sequence[str]) -> list[dict]:
    """Every world class that two of `datasets` name differently (both label it): the names, and whether
    Null BCE can resolve the conflict — each name lies outside the other dataset's label space, so that
    dataset gives it no gradient — or cannot: a dataset has the other's name in its space and so says
    "not that class" on those pixels."""
    policies = {d: load_policy(d) for d in datasets}
    out = []
    for w in WORLD_CLASSES:
        for a_i, a in enumerate(datasets):
            for b in datasets[a_i + 1 :]:
                na, nb = policies[a].labels[w], policies[b].labels[w]
                if na is None or nb is None or na == nb:
                    continue
                resolvable = na not in policies[b].classes and nb not in policies[a].classes
                out.append(
                    {"world": w, "a": a, "name_a": na, "b": b, "name_b": nb, "null_bce_resolves": resolvable}
                )
    return out


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
