"""params.yaml, parsed per section into frozen, strict pydantic models.

Fields declare their type, choices (`Literal`) and ranges (`Field`); the few rules a field type cannot
say are `_rules` validators. Strict: no "yes" for a bool, no 2.0 for an int, unknown keys are errors.
Pydantic's first error becomes a one-line `ParamsError` naming the file, key path, what is due and the value.
"""

from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from uniseg.errors import ParamsError, choices

LOSSES = ("ce", "bce", "nullbce")
BACKBONES = ("hrnet_w18_small", "hrnet_w18", "hrnet_w48")

# Ranges with the phrase an error shows: pydantic's own message names only the one bound that failed.
PosInt = Annotated[int, Field(ge=1, description="an int >= 1")]
NonNegInt = Annotated[int, Field(ge=0, description="an int >= 0")]
Side = Annotated[int, Field(ge=32, description="an int >= 32")]
Side8 = Annotated[int, Field(ge=32, multiple_of=8, description="an int >= 32, divisible by 8")]
Rate = Annotated[float, Field(gt=0, le=1, description="a number in (0, 1]")]
Fraction = Annotated[float, Field(ge=0, le=1, description="a number in [0, 1]")]


class _Section(BaseModel):
    # strict: lax mode would take "yes" for a bool and 2.0 for an int (an int is still widened to a float).
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_default(cls, data: Any) -> Any:
        return {} if data is None else data  # a YAML section with nothing under it


def _check(ok: bool, key: str, expected: str, got: Any) -> None:
    """A rule in `_rules`; `key` is relative to the model checking it (`_message` prefixes its path)."""
    if not ok:
        context = {"key": key, "expected": expected, "got": got}
        raise PydanticCustomError("rule", "{key}: expected {expected}", context)


class DataParams(_Section):
    source: Literal["synthetic", "real"] = "synthetic"
    root: str = "data/downloads"  # where user-supplied archives/folders of real datasets live
    skip_corrupt: bool = False  # skip unreadable samples (listed in the stage summary) instead of failing


class SyntheticParams(_Section):
    seed: int = 0  # the world's seed; separate from the training seed so `make seeds` reuses the data
    height: Side8 = 128
    width: Side8 = 256
    train_images: PosInt = 240  # per training dataset
    val_images: PosInt = 40  # per dataset (seen val split and unseen test sets)


class ShardParams(_Section):
    short_side: Side = 1080  # resize so the shorter side is this many pixels (the paper's protocol)
    images_per_shard: PosInt = 256
    workers: PosInt = 2


class ModelParams(_Section):
    backbone: str = "hrnet_w18_small"
    classifier: Literal["linear", "cosine"] = "cosine"
    t: float = Field(20.0, gt=0, description="a number > 0")  # cosine classifier scale
    pretrained: str = "none"  # none | timm (download via timm's hub) | path to a local checkpoint

    @model_validator(mode="after")
    def _rules(self) -> Self:
        _check(self.backbone in BACKBONES, "backbone", f"one of {choices(BACKBONES)}", self.backbone)
        return self


class TrainParams(_Section):
    datasets: list[str] = ["cityscapes", "bdd", "idd", "mapillary"]
    weights: list[float] = []  # optional per-dataset sampling weights
    iters: PosInt = 400
    batch_size: PosInt = 8
    lr: Rate = 0.01
    optimizer: Literal["sgd", "adamw"] = "sgd"
    momentum: float = Field(0.9, ge=0, lt=1, description="a number in [0, 1)")
    weight_decay: float = Field(1e-4, ge=0, description="a number >= 0")
    poly_power: float = 0.9
    crop: list[int] = [713, 713]  # [height, width]
    scale: list[float] = [0.5, 2.0]
    workers: NonNegInt = 2
    devices: int = Field(1, ge=1, le=64, description="an int in [1, 64]")  # >1: the stage runs torchrun
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    compile: bool = False  # torch.compile the model (CUDA)
    checkpoint_every: PosInt = 100
    log_every: PosInt = 20

    @model_validator(mode="after")
    def _rules(self) -> Self:
        _check(len(self.datasets) >= 1, "datasets", "a non-empty list of dataset names", self.datasets)
        _check(len(set(self.datasets)) == len(self.datasets), "datasets", "no duplicates", self.datasets)
        ok = not self.weights or (len(self.weights) == len(self.datasets) and min(self.weights) > 0)
        _check(ok, "weights", "empty, or one positive weight per dataset", self.weights)
        _check(len(self.crop) == 2 and min(self.crop) >= 32, "crop", "[height, width], each >= 32", self.crop)
        ok = len(self.scale) == 2 and 0 < self.scale[0] <= self.scale[1]
        _check(ok, "scale", "[min, max] with 0 < min <= max", self.scale)
        return self


class MineParams(_Section):
    batch_size: PosInt = 4


class RelabelParams(_Section):
    tau: Literal["auto"] | Fraction = Field("auto", description="'auto' or a number in [0, 1]")


class RetrainParams(_Section):
    init: Literal["base", "imagenet"] = "base"
    iters: PosInt = 200
    lr: Rate = 0.001
    optimizer: Literal["sgd", "adamw"] = "adamw"


class EvaluateParams(_Section):
    unseen: list[str] = ["kitti", "wilddash", "camvid"]
    seen: list[str] = ["cityscapes", "bdd", "idd", "mapillary"]
    height: Side = 1080  # resize so the image height is this before predicting
    window: int = 0  # sliding-window size in pixels (0 = whole image)
    leave_one_out: bool = False
    cross: bool = False  # score each training dataset in every other one's label space
    protocol: Literal["restricted", "merged", "both"] = "both"
    batch_size: PosInt = 1

    @model_validator(mode="after")
    def _rules(self) -> Self:
        _check(self.window == 0 or self.window >= 32, "window", "0 or an int >= 32", self.window)
        return self


class ReportParams(_Section):
    figure_images: NonNegInt = 2  # images per dataset in the Figure-4-like panels


class Params(_Section):
    seed: NonNegInt = 0
    loss: str = "nullbce"
    data: DataParams = DataParams()
    synthetic: SyntheticParams = SyntheticParams()
    shard: ShardParams = ShardParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    mine: MineParams = MineParams()
    relabel: RelabelParams = RelabelParams()
    retrain: RetrainParams = RetrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    report: ReportParams = ReportParams()

    @model_validator(mode="after")
    def _rules(self) -> Self:  # rules across sections: the dataset names depend on data.source
        _check(self.loss in LOSSES, "loss", f"one of {choices(LOSSES)}", self.loss)
        known = known_dataset_names(self.data.source)
        for key in ("train.datasets", "evaluate.unseen", "evaluate.seen"):
            section, name = key.split(".")
            for dataset in getattr(getattr(self, section), name):
                _check(dataset in known, key, f"dataset names from {choices(known)}", dataset)
        return self


def known_dataset_names(source: str) -> list[str]:
    """Dataset names valid for `data.source`: the real datasets uniseg has label tables for, and for
    the synthetic source also every policy file (a user can add one). Read from the data files, so
    that params.py imports nothing heavy."""
    here = Path(__file__).parent
    with open(here / "taxonomy" / "datasets.yaml", encoding="utf-8") as f:
        names = list(yaml.safe_load(f))
    if source == "synthetic":
        policies = (here / "datasets" / "synthetic" / "policies").glob("*.yaml")
        names += sorted(p.stem for p in policies if p.stem not in names)
    return names


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + choices(get_args(tp))
    if get_origin(tp) is list:  # "a list of ints"
        return "a list of " + _type_name(get_args(tp)[0]).split(" ", 1)[-1] + "s"
    return {int: "an int", float: "a number", str: "a string", bool: "true/false"}.get(tp, str(tp))


def _message(error: dict, source: str) -> str:
    """`<source>: <key path>: expected <what>, got <value>` for one of pydantic's errors."""
    path: list[str] = []
    tp, what = Params, None
    for part in error["loc"]:  # follow the models for the key path and the declared type there
        if isinstance(part, int) and get_origin(tp) is list:
            path[-1] += f"[{part}]"
            tp, what = get_args(tp)[0], None
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
            path.append(str(part))
            tp, what = tp.model_fields[part].annotation, tp.model_fields[part].description
        # anything else is a union member's tag ("literal['auto']") or an unknown key
    where, got = ".".join(path) or "the top level", error["input"]
    if error["type"] in ("extra_forbidden", "invalid_key"):
        unknown = ".".join([*path, str(error["loc"][-1])])
        return f"{source}: unknown key '{unknown}'; valid keys in {where}: {choices(tp.model_fields)}"
    if error["type"] == "rule":  # from `_check`: the key under the model checking it, what, the value
        ctx = error["ctx"]
        where, what, got = ".".join([*path, ctx["key"]]), ctx["expected"], ctx["got"]
    elif error["type"] == "model_type":
        what = "a mapping of keys"
    return f"{source}: {where}: expected {what or _type_name(tp)}, got {got!r}"


def parse_params(data: Any, source: str = "params.yaml") -> Params:
    """Validate a params mapping (as loaded from YAML) into `Params`; a ParamsError names `source`."""
    try:
        return Params.model_validate(data)
    except ValidationError as exc:
        raise ParamsError(_message(exc.errors(include_url=False)[0], source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; raises ParamsError for a missing, malformed or invalid file."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: not found; run from the project root (where params.yaml is)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return parse_params(data, str(path))
