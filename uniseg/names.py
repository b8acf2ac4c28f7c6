"""The names a param may pick, in one torch-free place.

params.py validates against these lists and imports nothing heavy (a stage's DVC deps are its imports);
the registries that implement them — model/losses.py, model/segmodel.py, model/backbones/ — are tied
to them by tests/test_names.py.
"""

from __future__ import annotations

from pathlib import Path

import yaml

LOSSES = ("ce", "bce", "nullbce", "crbce")  # losses.py registers exactly these
BASE_LOSSES = ("ce", "bce", "nullbce")  # `loss` (the base model): the losses that need no mined relations
BACKBONES = (
    "hrnet_w18_small",
    "hrnet_w18",
    "hrnet_w48",
    "mit_b0",
    "mit_b1",
    "mit_b2",
    "mit_b3",
    "mit_b4",
    "mit_b5",
)  # each built by its family: model/backbones/<family>.py
CLASSIFIERS = ("linear", "cosine")  # model/segmodel.py
# The datasets whose shards the training stages (train, mine, relabel, retrain) depend on in dvc.yaml —
# DVC cannot expand train.datasets into deps; tests/test_pipeline.py ties the two lists.
TRAINING_DATASETS = ("cityscapes", "bdd", "idd", "mapillary")

_HERE = Path(__file__).parent


def known_dataset_names(source: str) -> list[str]:
    """Dataset names valid for `data.source`: the real datasets uniseg has label tables for, and for the
    synthetic source also every policy file (a user can add one)."""
    with open(_HERE / "taxonomy" / "datasets.yaml", encoding="utf-8") as f:
        names = list(yaml.safe_load(f))
    if source == "synthetic":
        policies = (_HERE / "datasets" / "synthetic" / "policies").glob("*.yaml")
        names += sorted(p.stem for p in policies if p.stem not in names)
    return names
