"""params.yaml parsing: every section typed, unknown keys and bad values named by key path."""

import re
from pathlib import Path

import pytest
import yaml

from uniseg.errors import ParamsError
from uniseg.params import Params, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]


def test_committed_params_files_are_valid():
    names = [p.name for p in sorted(ROOT.glob("params*.yaml"))]
    assert {"params.yaml", "params.paper.yaml", "params.paper-segformer.yaml", "params.tiny.yaml"} <= set(
        names
    )
    for name in names:
        assert isinstance(load_params(ROOT / name), Params), name


def test_the_paper_profile_leaves_the_committed_backbone_up_to_date():
    """The paper profiles use ImageNet weights; their pretrain params (and the rendered size they depend on)
    equal the default's, so `cp params.paper.yaml params.yaml && dvc repro` does not rerun pretraining."""
    default = load_params(ROOT / "params.yaml")
    for name in ("params.paper.yaml", "params.paper-segformer.yaml"):
        paper = load_params(ROOT / name)
        assert paper.model.pretrained != default.model.pretrained, name  # ImageNet weights
        assert paper.pretrain == default.pretrain, name
        assert (paper.synthetic.height, paper.synthetic.width) == (
            default.synthetic.height,
            default.synthetic.width,
        ), name


def test_defaults_fill_missing_sections():
    p = parse_params({"loss": "ce"})
    assert p.loss == "ce" and p.train.batch_size == Params().train.batch_size


def test_ints_are_accepted_where_numbers_are_due():
    assert parse_params({"train": {"lr": 1}}).train.lr == 1.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"trian": {}}, "unknown key 'trian'"),
        ({"train": {"itres": 3}}, "unknown key 'train.itres'"),
        ({"train": {"lr": "fast"}}, "train.lr: expected a number"),
        ({"train": {"lr": 0}}, "train.lr: expected a number in (0, 1]"),
        ({"train": {"iters": 2.5}}, "train.iters: expected an int"),
        ({"train": {"crop": [16, 16]}}, "train.crop"),
        ({"train": {"devices": 0}}, "train.devices"),
        ({"train": {"datasets": []}}, "train.datasets: expected a non-empty list"),
        ({"relabel": {"tau": 1.5}}, "relabel.tau"),
        ({"relabel": {"tau": "sometimes"}}, "relabel.tau"),
        ({"loss": "focal"}, "loss: expected one of ce, bce, nullbce"),
        ({"model": {"backbone": "resnet50"}}, "model.backbone: expected one of hrnet_w18_small"),
        ({"model": {"classifier": "mlp"}}, "model.classifier: expected one of linear, cosine"),
        ({"evaluate": {"protocol": "loose"}}, "evaluate.protocol"),
        ({"data": {"skip_corrupt": "yes"}}, "data.skip_corrupt: expected true/false"),
        ({"train": "fast"}, "train: expected a mapping"),
        (
            {"train": {"datasets": ["cityscape"]}},
            "train.datasets: expected dataset names from cityscapes, bdd",
        ),
        ({"evaluate": {"unseen": ["kiti"]}}, "evaluate.unseen: expected dataset names from"),
    ],
)
def test_bad_values_are_named(data, message):
    with pytest.raises(ParamsError) as info:
        parse_params(data)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [  # what pydantic's lax mode would coerce; the old hand-written checks rejected them too
        ({"train": {"iters": 2.0}}, "train.iters: expected an int"),
        ({"train": {"amp": 1}}, "train.amp: expected true/false, got 1"),
        ({"seed": "3"}, "seed: expected an int"),
        ({"train": {"lr": True}}, "train.lr: expected a number"),
        ({"train": {"crop": [64.0, 64]}}, "train.crop[0]: expected an int"),
    ],
)
def test_values_are_not_coerced(data, message):
    with pytest.raises(ParamsError, match=re.escape(message)):
        parse_params(data)


def test_the_message_names_the_file_loaded(tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text("train:\n  lr: 0\n")
    with pytest.raises(ParamsError) as info:
        load_params(other)
    assert str(info.value) == f"{other}: train.lr: expected a number in (0, 1], got 0"
    with pytest.raises(ParamsError, match=r"^params\.yaml: seed: "):
        parse_params({"seed": -1})


def test_sections_are_frozen_and_lists_stay_lists():
    p = parse_params({"train": {"crop": [64, 128]}})
    assert p.train.crop == [64, 128] and isinstance(p.train.crop, list)
    with pytest.raises(ValueError):
        p.train.lr = 0.5
    assert p.train.model_copy(update={"lr": 0.5}).lr == 0.5 and p.train.lr == 0.01


def test_a_training_dataset_whose_shards_the_training_stages_do_not_depend_on_is_refused():
    with pytest.raises(ParamsError, match="add another's shards to dvc.yaml's training stages and names.py"):
        parse_params({"train": {"datasets": ["cityscapes", "kitti"]}})
    assert parse_params({"train": {"datasets": ["idd", "bdd"]}}).train.datasets == ["idd", "bdd"]


def test_malformed_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")


def test_every_default_key_is_in_params_yaml():
    """params.yaml spells out every key, so the file is the reference a user edits."""

    def keys(d, prefix=""):
        out = set()
        for k, v in d.items():
            out.add(prefix + k)
            if isinstance(v, dict):
                out |= keys(v, prefix + k + ".")
        return out

    from pydantic import BaseModel

    def dc_keys(obj, prefix=""):
        out = set()
        for name in type(obj).model_fields:
            v = getattr(obj, name)
            out.add(prefix + name)
            if isinstance(v, BaseModel):
                out |= dc_keys(v, prefix + name + ".")
        return out

    written = keys(yaml.safe_load((ROOT / "params.yaml").read_text()))
    assert dc_keys(Params()) == written
