"""params.yaml parsing: every section typed, unknown keys and bad values named by key path."""

from pathlib import Path

import pytest
import yaml

from uniseg.errors import ParamsError
from uniseg.params import Params, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]


def test_committed_params_files_are_valid():
    for name in ("params.yaml", "params.paper.yaml", "params.tiny.yaml"):
        assert isinstance(load_params(ROOT / name), Params), name


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

    import dataclasses

    def dc_keys(obj, prefix=""):
        out = set()
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            out.add(prefix + f.name)
            if dataclasses.is_dataclass(v):
                out |= dc_keys(v, prefix + f.name + ".")
        return out

    written = keys(yaml.safe_load((ROOT / "params.yaml").read_text()))
    assert dc_keys(Params()) == written
