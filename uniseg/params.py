"""params.yaml as frozen, strict pydantic models per section (no "yes" for a bool, no 2.0 for an int, no unknown
key): types, choices (uniseg.names) and ranges with the phrase an error shows; validators for rules across fields."""

from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from uniseg.errors import ParamsError, choices, rule, validation_message
from uniseg.names import BACKBONES, BASE_LOSSES, CLASSIFIERS, TRAINING_DATASETS, known_dataset_names

PosInt = Annotated[int, Field(ge=1, description="an int >= 1")]
NonNegInt = Annotated[int, Field(ge=0, description="an int >= 0")]
Side = Annotated[int, Field(ge=32, description="an int >= 32")]
Side8 = Annotated[int, Field(ge=32, multiple_of=8, description="an int >= 32, divisible by 8")]
Rate = Annotated[float, Field(gt=0, le=1, description="a number in (0, 1]")]
Fraction = Annotated[float, Field(ge=0, le=1)]
Datasets = Annotated[list[str], Field(min_length=1, description="a non-empty list of dataset names")]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DataParams(_Section):
    source: Literal["synthetic", "real"] = "synthetic"
    root: str = "data/downloads"  # where the user's archives/folders of real datasets live
    skip_corrupt: bool = False  # skip unreadable samples (listed in the stage summary) instead of failing


class SyntheticParams(_Section):
    seed: int = 0  # the world's seed; separate from the training seed so `make seeds` reuses the data
    height: Side8 = 128
    width: Side8 = 256
    train_images: PosInt = 240  # per training dataset
    val_images: PosInt = 160  # per training dataset (the seen val split)
    test_images: PosInt = 400  # per test dataset (the unseen test sets)
    negative_images: NonNegInt = 100  # negative frames of a test set that has them (WildDash 2)


class ShardParams(_Section):
    short_side: Side = 1080  # resize so the shorter side is this many pixels (the paper's protocol)
    images_per_shard: PosInt = 256
    workers: PosInt = 2
    # Training images as stored: "source" keeps each source's codec (PNG stays PNG: lossless, slow to
    # decode at 1080p); "jpeg" stores PNG sources as JPEG (quality 95), 4x faster to decode. Labels and
    # every test set stay lossless.
    image_format: Literal["source", "jpeg"] = "source"


class ModelParams(_Section):
    backbone: Literal[BACKBONES] = "hrnet_w18_small"
    classifier: Literal[CLASSIFIERS] = "cosine"
    t: float = Field(20.0, gt=0, description="a number > 0")  # cosine classifier scale
    pretrained: str = "models/pretrained.pt"  # none | timm (ImageNet, timm's hub) | a checkpoint file


class PretrainParams(_Section):  # the backbone on the synthetic world (uniseg/train/pretrain.py)
    # dense world classes (stronger than ImageNet's labels) | image-level, as ImageNet
    task: Literal["segmentation", "presence"] = "segmentation"
    backbone: Literal[BACKBONES] = "hrnet_w18_small"
    seed: int = 0
    images: PosInt = 4000  # rendered scenes, random styles
    iters: PosInt = 1600
    batch_size: PosInt = 32
    lr: Rate = 0.05


class TrainParams(_Section):
    datasets: Datasets = ["cityscapes", "bdd", "idd", "mapillary"]
    weights: list[float] = []  # optional per-dataset sampling weights
    iters: PosInt = 400
    batch_size: PosInt = 8
    lr: Rate = 0.01
    optimizer: Literal["sgd", "adamw"] = "sgd"
    momentum: float = Field(0.9, ge=0, lt=1, description="a number in [0, 1)")
    weight_decay: float = Field(1e-4, ge=0, description="a number >= 0")
    poly_power: float = 0.9
    crop: list[Side] = Field([713, 713], min_length=2, max_length=2, description="[height, width], >= 32")
    scale: list[float] = Field([0.5, 2.0], min_length=2, max_length=2, description="[min, max]")
    # "image": resize the whole image, then crop; "window": resize only what the crop keeps (the same
    # scales and crops, to half a source pixel; far faster when images are much larger than the crop)
    resize: Literal["image", "window"] = "image"
    workers: NonNegInt = 2
    devices: int = Field(1, ge=1, le=64, description="an int in [1, 64]")  # >1: the stage runs torchrun
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    # bf16 autocast + channels_last on a CPU with bf16 units (AMX, AVX-512 BF16); float32 on other CPUs
    amp_cpu: bool = False
    compile: bool = False  # torch.compile the model (CUDA)
    checkpoint_every: PosInt = 100
    log_every: PosInt = 20

    @model_validator(mode="after")
    def _rules(self) -> Self:
        rule(len(set(self.datasets)) == len(self.datasets), "datasets", "no duplicates", self.datasets)
        ok = not self.weights or (len(self.weights) == len(self.datasets) and min(self.weights) > 0)
        rule(ok, "weights", "empty, or one positive weight per dataset", self.weights)
        rule(0 < self.scale[0] <= self.scale[1], "scale", "[min, max] with 0 < min <= max", self.scale)
        known = (
            f"{choices(TRAINING_DATASETS)} (add another's shards to dvc.yaml's training stages and names.py)"
        )
        for name in self.datasets:  # DVC cannot expand train.datasets into deps: dvc.yaml lists these shards
            rule(name in TRAINING_DATASETS, "datasets", f"dataset names from {known}", name)
        return self


class MineParams(_Section):
    batch_size: PosInt = 4
    workers: NonNegInt = 2  # loader processes that decode while the model runs


class RelabelParams(_Section):
    tau: Literal["auto"] | Fraction = Field("auto", description="'auto' or a number in [0, 1]")
    candidates: Literal["others", "outside"] = "others"  # secondaries: other datasets' classes | outside D_i


class RetrainParams(_Section):
    init: Literal["base", "imagenet"] = "base"
    iters: PosInt = 200
    lr: Rate = 0.001
    optimizer: Literal["sgd", "adamw"] = "adamw"


class EvaluateParams(_Section):
    unseen: list[str] = ["kitti", "wilddash", "camvid"]
    seen: list[str] = ["cityscapes", "bdd", "idd", "mapillary"]
    height: Side = 1080  # resize so the image height is this before predicting
    window: Literal[0] | Side = Field(0, description="0 or an int >= 32")  # sliding window, 0 = whole
    leave_one_out: bool = False
    cross: bool = False  # score each training dataset in every other one's label space
    protocol: Literal["restricted", "merged", "both"] = "both"
    batch_size: PosInt = 1
    workers: NonNegInt = 2  # loader processes that decode while the model runs


class ReportParams(_Section):
    figure_images: NonNegInt = 2  # images per dataset in the Figure-4-like panels


class Params(_Section):
    seed: NonNegInt = 0
    loss: Literal[BASE_LOSSES] = "nullbce"
    data: DataParams = DataParams()
    synthetic: SyntheticParams = SyntheticParams()
    shard: ShardParams = ShardParams()
    model: ModelParams = ModelParams()
    pretrain: PretrainParams = PretrainParams()
    train: TrainParams = TrainParams()
    mine: MineParams = MineParams()
    relabel: RelabelParams = RelabelParams()
    retrain: RetrainParams = RetrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    report: ReportParams = ReportParams()

    @model_validator(mode="after")
    def _rules(self) -> Self:  # the datasets there are to evaluate depend on data.source
        known = known_dataset_names(self.data.source)
        for key in ("unseen", "seen"):
            for name in getattr(self.evaluate, key):
                rule(name in known, f"evaluate.{key}", f"dataset names from {choices(known)}", name)
        return self


def parse_params(data: Any, source: str = "params.yaml") -> Params:
    """Validate a params mapping (as loaded from YAML) into `Params`; a ParamsError names `source`."""
    if isinstance(data, dict):  # a YAML section with nothing under it means its defaults
        data = {k: {} if v is None and k in Params.model_fields else v for k, v in data.items()}
    try:
        return Params.model_validate({} if data is None else data)
    except ValidationError as exc:
        raise ParamsError(validation_message(exc.errors(include_url=False)[0], Params, source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file; raises ParamsError for a missing, malformed or invalid file."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: not found; run from the project root (where params.yaml is)")
    try:
        return parse_params(yaml.safe_load(path.read_text(encoding="utf-8")), str(path))
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
