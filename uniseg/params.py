"""params.yaml, parsed per section into typed, validated dataclasses.

One source of configuration. Every section is a dataclass; unknown keys, wrong types and out-of-range
values are `ParamsError`s that name the key path (`train.lr`) and, for choices, the valid values.
A stage calls `load_params()` and uses only the sections it declares in dvc.yaml.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from uniseg.errors import ParamsError, choices

LOSSES = ("ce", "bce", "nullbce")
BACKBONES = ("hrnet_w18_small", "hrnet_w18", "hrnet_w48")


@dataclass(frozen=True)
class DataParams:
    source: Literal["synthetic", "real"] = "synthetic"
    root: str = "data/downloads"  # where user-supplied archives/folders of real datasets live
    skip_corrupt: bool = (
        False  # skip unreadable/corrupt samples (listed in the stage summary) instead of failing
    )


@dataclass(frozen=True)
class SyntheticParams:
    seed: int = 0  # the world's seed; separate from the training seed so `make seeds` reuses the data
    height: int = 128
    width: int = 256
    train_images: int = 240  # per training dataset
    val_images: int = 40  # per dataset (seen val split and unseen test sets)

    def validate(self, at: str) -> None:
        _check(
            self.height >= 32 and self.height % 8 == 0,
            f"{at}.height",
            "an int >= 32, divisible by 8",
            self.height,
        )
        _check(
            self.width >= 32 and self.width % 8 == 0,
            f"{at}.width",
            "an int >= 32, divisible by 8",
            self.width,
        )
        _check(self.train_images >= 1, f"{at}.train_images", "an int >= 1", self.train_images)
        _check(self.val_images >= 1, f"{at}.val_images", "an int >= 1", self.val_images)


@dataclass(frozen=True)
class ShardParams:
    short_side: int = 1080  # resize so the shorter side is this many pixels (the paper's protocol)
    images_per_shard: int = 256
    workers: int = 2

    def validate(self, at: str) -> None:
        _check(self.short_side >= 32, f"{at}.short_side", "an int >= 32", self.short_side)
        _check(self.images_per_shard >= 1, f"{at}.images_per_shard", "an int >= 1", self.images_per_shard)
        _check(self.workers >= 1, f"{at}.workers", "an int >= 1", self.workers)


@dataclass(frozen=True)
class ModelParams:
    backbone: str = "hrnet_w18_small"
    classifier: Literal["linear", "cosine"] = "cosine"
    t: float = 20.0  # cosine classifier scale
    pretrained: str = "none"  # none | timm (download via timm's hub) | path to a local checkpoint

    def validate(self, at: str) -> None:
        _check(self.backbone in BACKBONES, f"{at}.backbone", f"one of {choices(BACKBONES)}", self.backbone)
        _check(self.t > 0, f"{at}.t", "a number > 0", self.t)


@dataclass(frozen=True)
class TrainParams:
    datasets: list[str] = field(default_factory=lambda: ["cityscapes", "bdd", "idd", "mapillary"])
    weights: list[float] = field(default_factory=list)  # optional per-dataset sampling weights
    iters: int = 400
    batch_size: int = 8
    lr: float = 0.01
    optimizer: Literal["sgd", "adamw"] = "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    crop: list[int] = field(default_factory=lambda: [713, 713])  # [height, width]
    scale: list[float] = field(default_factory=lambda: [0.5, 2.0])
    workers: int = 2
    devices: int = 1  # >1: the stage launches torchrun with this many processes
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    compile: bool = False  # torch.compile the model (CUDA)
    checkpoint_every: int = 100
    log_every: int = 20

    def validate(self, at: str) -> None:
        _check(len(self.datasets) >= 1, f"{at}.datasets", "a non-empty list of dataset names", self.datasets)
        _check(
            len(set(self.datasets)) == len(self.datasets), f"{at}.datasets", "no duplicates", self.datasets
        )
        _check(
            not self.weights or (len(self.weights) == len(self.datasets) and min(self.weights) > 0),
            f"{at}.weights",
            "empty, or one positive weight per dataset",
            self.weights,
        )
        _check(self.iters >= 1, f"{at}.iters", "an int >= 1", self.iters)
        _check(self.batch_size >= 1, f"{at}.batch_size", "an int >= 1", self.batch_size)
        _check(0 < self.lr <= 1, f"{at}.lr", "a number in (0, 1]", self.lr)
        _check(0 <= self.momentum < 1, f"{at}.momentum", "a number in [0, 1)", self.momentum)
        _check(self.weight_decay >= 0, f"{at}.weight_decay", "a number >= 0", self.weight_decay)
        _check(
            len(self.crop) == 2 and min(self.crop) >= 32,
            f"{at}.crop",
            "[height, width], each >= 32",
            self.crop,
        )
        _check(
            len(self.scale) == 2 and 0 < self.scale[0] <= self.scale[1],
            f"{at}.scale",
            "[min, max] with 0 < min <= max",
            self.scale,
        )
        _check(self.workers >= 0, f"{at}.workers", "an int >= 0", self.workers)
        _check(1 <= self.devices <= 64, f"{at}.devices", "an int in [1, 64]", self.devices)
        _check(self.checkpoint_every >= 1, f"{at}.checkpoint_every", "an int >= 1", self.checkpoint_every)
        _check(self.log_every >= 1, f"{at}.log_every", "an int >= 1", self.log_every)


@dataclass(frozen=True)
class MineParams:
    batch_size: int = 4

    def validate(self, at: str) -> None:
        _check(self.batch_size >= 1, f"{at}.batch_size", "an int >= 1", self.batch_size)


@dataclass(frozen=True)
class RelabelParams:
    tau: float | Literal["auto"] = "auto"

    def validate(self, at: str) -> None:
        if self.tau != "auto":
            _check(0 <= self.tau <= 1, f"{at}.tau", "'auto' or a number in [0, 1]", self.tau)


@dataclass(frozen=True)
class RetrainParams:
    init: Literal["base", "imagenet"] = "base"
    iters: int = 200
    lr: float = 0.001
    optimizer: Literal["sgd", "adamw"] = "adamw"

    def validate(self, at: str) -> None:
        _check(self.iters >= 1, f"{at}.iters", "an int >= 1", self.iters)
        _check(0 < self.lr <= 1, f"{at}.lr", "a number in (0, 1]", self.lr)


@dataclass(frozen=True)
class EvaluateParams:
    unseen: list[str] = field(default_factory=lambda: ["kitti", "wilddash", "camvid"])
    seen: list[str] = field(default_factory=lambda: ["cityscapes", "bdd", "idd", "mapillary"])
    height: int = 1080  # resize so the image height is this before predicting
    window: int = 0  # sliding-window size in pixels (0 = whole image)
    leave_one_out: bool = False
    cross: bool = False  # score each training dataset in every other one's label space
    protocol: Literal["restricted", "merged", "both"] = "both"
    batch_size: int = 1

    def validate(self, at: str) -> None:
        _check(self.height >= 32, f"{at}.height", "an int >= 32", self.height)
        _check(self.window == 0 or self.window >= 32, f"{at}.window", "0 or an int >= 32", self.window)
        _check(self.batch_size >= 1, f"{at}.batch_size", "an int >= 1", self.batch_size)


@dataclass(frozen=True)
class ReportParams:
    figure_images: int = 2  # images per dataset in the Figure-4-like panels

    def validate(self, at: str) -> None:
        _check(self.figure_images >= 0, f"{at}.figure_images", "an int >= 0", self.figure_images)


@dataclass(frozen=True)
class Params:
    seed: int = 0
    loss: str = "nullbce"
    data: DataParams = field(default_factory=DataParams)
    synthetic: SyntheticParams = field(default_factory=SyntheticParams)
    shard: ShardParams = field(default_factory=ShardParams)
    model: ModelParams = field(default_factory=ModelParams)
    train: TrainParams = field(default_factory=TrainParams)
    mine: MineParams = field(default_factory=MineParams)
    relabel: RelabelParams = field(default_factory=RelabelParams)
    retrain: RetrainParams = field(default_factory=RetrainParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    report: ReportParams = field(default_factory=ReportParams)

    def validate(self, at: str) -> None:
        _check(self.loss in LOSSES, "loss", f"one of {choices(LOSSES)}", self.loss)
        _check(self.seed >= 0, "seed", "an int >= 0", self.seed)
        known = known_dataset_names(self.data.source)
        for key, names in (
            ("train.datasets", self.train.datasets),
            ("evaluate.unseen", self.evaluate.unseen),
            ("evaluate.seen", self.evaluate.seen),
        ):
            for name in names:
                _check(name in known, key, f"dataset names from {choices(known)}", name)


def known_dataset_names(source: str) -> list[str]:
    """Dataset names valid for `data.source`: the real datasets uniseg has label tables for, and for
    the synthetic source also every policy file (a user can add one). Read from the data files, so
    that params.py imports nothing heavy."""
    here = Path(__file__).parent
    with open(here / "taxonomy" / "datasets.yaml", encoding="utf-8") as f:
        names = list(yaml.safe_load(f))
    if source == "synthetic":
        names += sorted(
            p.stem
            for p in (here / "datasets" / "synthetic" / "policies").glob("*.yaml")
            if p.stem not in names
        )
    return names


def _check(ok: bool, key: str, expected: str, got: Any) -> None:
    if not ok:
        raise ParamsError(f"params.yaml: {key}: expected {expected}, got {got!r}")


def _type_name(tp) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + choices(typing.get_args(tp))
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return {int: "an int", float: "a number", str: "a string", bool: "true/false"}.get(tp, str(tp))


def _coerce(value: Any, tp, key: str):
    """Check `value` against the type hint `tp`; return it (ints widened to float where a float is due)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
    elif origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, key)
            except ParamsError:
                continue
    elif origin is list:
        if isinstance(value, list):
            (item,) = typing.get_args(tp)
            return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ParamsError(f"params.yaml: {key}: expected {_type_name(tp)}, got {value!r}")


def _build(cls, data: Any, at: str):
    where = at or "the top level"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamsError(f"params.yaml: {where}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ParamsError(
            f"params.yaml: unknown key '{(at + '.') if at else ''}{unknown[0]}'; valid keys in {where}: {choices(names)}"
        )
    values = {k: _coerce(v, hints[k], f"{at}.{k}" if at else k) for k, v in data.items()}
    obj = cls(**values)
    if hasattr(obj, "validate"):
        obj.validate(at)
    return obj


def parse_params(data: Any) -> Params:
    """Validate a params mapping (as loaded from YAML) into `Params`; raises ParamsError."""
    return _build(Params, data, "")


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; raises ParamsError for a missing, malformed or invalid file."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: not found; run from the project root (where params.yaml is)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return parse_params(data)
