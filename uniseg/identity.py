"""What decides a trained model, declared once.

A model is decided by the code its training runs, the params its stage declares, its training data (the
shards, by content) and its initial weights by content (the pretrained backbone; the base model of a
retrain). Three caches hold models and must agree on that: DVC (dvc.yaml's deps of the train and retrain
stages), the resumable checkpoint (`train.engine`: a checkpoint written from other inputs is never
resumed) and the stored results of `make seeds` (`experiments.fingerprints`). This module declares the
code part; the checkpoint and the seeds' fingerprints hash what it returns, and tests/test_pipeline.py
holds dvc.yaml's deps of both stages equal to it.

A backbone family is one module, `uniseg/model/backbones/<family>.py` (the name's first word: hrnet_w18 ->
hrnet.py), and a model's identity covers its own family's module only: adding a family changes no other
model's identity. `uniseg/names.py` is a dep of the stages (params are validated against it) but not of a
model's identity (nor is this module): it says which names a param may take, never what a name computes, so adding a backbone
or a dataset name leaves every trained model current.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository: paths below are relative to it

# The library code that both training stages run (a folder stands for every file below it).
TRAINING_CODE = (
    "uniseg/train/engine.py",
    "uniseg/train/checkpoints.py",
    "uniseg/train/distributed.py",
    "uniseg/train/trainlog.py",  # the learning-rate schedule
    "uniseg/train/loader.py",
    "uniseg/train/transforms.py",
    "uniseg/model/segmodel.py",
    "uniseg/model/losses.py",
    "uniseg/model/inputs.py",
    "uniseg/shards/__init__.py",
    "uniseg/datasets/layout.py",
    "uniseg/taxonomy/__init__.py",  # the union and its LUTs; the label tables act through the shards
    "uniseg/params.py",
    "uniseg/fsio.py",
    "uniseg/errors.py",
)
# Each stage's own entry and what it alone runs.
STAGE_CODE = {
    "train": ("stages/train.py",),
    "retrain": ("stages/retrain.py", "uniseg/relations/mining.py"),  # reads the multi-label table
}
BACKBONES = "uniseg/model/backbones"
# Deps of the training stages that decide no model: which names a param may take (see above), and this
# declaration itself.
NOT_IDENTITY = ("uniseg/names.py", "uniseg/identity.py")


def family(backbone: str) -> str:
    """The backbone family's module name: hrnet_w18_small -> "hrnet"."""
    return backbone.split("_", 1)[0]


def backbone_code(backbone: str) -> tuple[str, ...]:
    """The encoder contract and the one family module that builds `backbone`."""
    return (f"{BACKBONES}/__init__.py", f"{BACKBONES}/{family(backbone)}.py")


def training_code(stage: str, backbone: str) -> tuple[str, ...]:
    """The code that decides a model trained by `stage` ("train" or "retrain") on `backbone`."""
    return (*STAGE_CODE[stage], *TRAINING_CODE, *backbone_code(backbone))


def code_files(entries: Iterable[str], root: Path | None = None) -> list[Path]:
    """The files of `entries` (paths relative to `root`, default `ROOT`; a folder: every file below
    it), sorted."""
    root, files = root or ROOT, set()
    for entry in entries:
        path = root / entry
        found = path.rglob("*") if path.is_dir() else [path]
        files.update(p for p in found if p.is_file() and "__pycache__" not in p.parts)
    return sorted(files)


def hash_files(h, files: Iterable[Path], root: Path) -> None:
    """Feed each file's path (relative to `root`) and bytes to the hash `h`, in the order given."""
    for f in files:
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())


def code_digest(entries: Iterable[str], root: Path | None = None) -> str:
    """sha256 over each file's path (relative to `root`, default `ROOT`) and bytes."""
    root, h = root or ROOT, hashlib.sha256()
    hash_files(h, code_files(entries, root), root)
    return h.hexdigest()


def file_digest(path: str | Path | None) -> str:
    """sha256 of a weights file's bytes; "-" when `path` names no file (no weights, or timm's hub)."""
    if path is None or not Path(path).is_file():
        return "-"
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
