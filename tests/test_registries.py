"""The places that describe the datasets agree, so adding one is a recipe (docs/design.md, "Adding a
dataset") and a forgotten place fails here rather than in a user's `dvc repro`.

The registries: the label tables (uniseg/taxonomy/datasets.yaml), the official layouts
(datasets/real.py LAYOUTS), what to download and from where (datasets/download.py SOURCES), the shipped
evaluation lists (datasets/splits/), the synthetic policies (datasets/synthetic/policies/), the
training datasets the training stages depend on (names.TRAINING_DATASETS) and dvc.yaml's dataset list."""

from pathlib import Path

import yaml

from uniseg import names, taxonomy
from uniseg.datasets import download, real, splits
from uniseg.datasets.synthetic import load_policy

ROOT = Path(__file__).resolve().parents[1]
KNOWN = taxonomy.known_datasets()


def test_every_known_dataset_has_a_layout_a_source_and_a_synthetic_policy():
    assert set(real.LAYOUTS) == set(KNOWN)
    assert set(download.SOURCES) == set(KNOWN)
    policies = {p.stem for p in (ROOT / "uniseg/datasets/synthetic/policies").glob("*.yaml")}
    assert set(KNOWN) <= policies


def test_each_policy_plays_the_role_and_uses_the_label_space_of_its_namesake():
    for name in KNOWN:
        policy, info = load_policy(name), taxonomy.dataset_info(name)
        assert policy.role == info.role, name
        assert policy.classes == list(info.classes), f"{name}: the synthetic label space is the real one"


def test_the_pipeline_renders_and_shards_every_known_dataset():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    assert set(stages["vars"][0]["datasets"]) == set(KNOWN)


def test_training_datasets_are_the_train_role_and_test_sets_have_an_evaluation_split():
    roles = {d: taxonomy.dataset_info(d).role for d in KNOWN}
    assert set(names.TRAINING_DATASETS) == {d for d, r in roles.items() if r == "train"}
    tests = {d for d, r in roles.items() if r == "test"}
    assert set(real.EVAL_SPLIT) == tests
    for name in tests:
        assert real.EVAL_SPLIT[name] in real.LAYOUTS[name], f"{name}: its evaluation split has a layout"


def test_every_shipped_evaluation_list_belongs_to_a_known_dataset_and_split():
    for path in splits.HERE.glob("*.txt"):
        name, _, split = path.stem.rpartition("-")
        assert name in KNOWN and split in real.LAYOUTS[name], path.name
