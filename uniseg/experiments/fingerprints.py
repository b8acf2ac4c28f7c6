"""Fingerprints of `make seeds` results: what a stored result was computed from, so that a result is
recomputed exactly when something it depends on changed.

A result has two: of its training (the code files of the dvc.yaml stages that make the model and its
mined relations, the pretrained backbone — a dep of those stages, hashed by content — the training data
by content, and the params those stages declare) and of its evaluation (the same plus the evaluate
stage's code and every scored dataset). Presentation code and the params that only change how a run is
executed are left out. The device is left out on purpose: the same code, data and params give slightly
different numbers on a GPU or on a CPU with other vector instructions, so each result records the device
it ran on (`compute_device`) and the headline says which seeds ran where.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

from uniseg import identity
from uniseg.shards import ShardReader

# Code that only draws or writes reports (relabel also renders relations.md and the heat map): a change
# there never changes a number, so it does not make results stale.
PRESENTATION = ("uniseg/report", "uniseg/colours.py", "uniseg/datasets/preview.py", "uniseg/plotting.py")
# The metrics files' writer and vocabulary: the training stages import it only to write relations.json,
# so it is left out of a training fingerprint; the evaluation fingerprint covers it.
REPORTING = ("uniseg/scores.py",)
# Params that change how a run is executed or reported, not what it computes.
NOT_COMPUTATION = {
    "train": {"workers", "checkpoint_every", "log_every"},
    "shard": {"workers"},
    "mine": {"workers"},
    "evaluate": {"workers"},
}


def compute_device(threads: int | None = None) -> str:
    """What the stage commands compute on: CUDA when there is a GPU (they pick it), else the CPU, named by
    the vector instructions its kernels use (AVX2 and AVX-512 kernels round differently) and, when a run
    was limited to fewer threads than the machine has (`make seeds JOBS=N`), the threads: another
    reduction order, so last-bit differences like another device's."""
    import torch

    if torch.cuda.is_available():
        return f"cuda {torch.cuda.get_device_name(0)}"
    cpu = f"cpu {torch.backends.cpu.get_cpu_capability()}"
    return cpu if threads is None else f"{cpu}, {threads} threads"


def _code_files(stages: tuple[str, ...], params: dict, root: Path) -> list[Path]:
    """The code and input files the given dvc.yaml stages depend on. The training stages' code is what
    decides a model (`uniseg.identity`, which dvc.yaml's deps of them equal) with the pretrained backbone
    by content, an input of every training here as ImageNet's weights are of the paper's; the other
    stages' code comes from their dvc.yaml deps: not data, not presentation, not the metrics writer but
    for the evaluate stage, no other stage's output (models/base.pt is a dep of mine), not the modules
    that decide nothing computed (`identity.NOT_IDENTITY`: the names a param may take), and of the
    backbone families only the model's own: adding a backbone leaves every stored result current."""
    spec = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    backbone = params.get("model", {}).get("backbone")  # none for the data stages
    own_family = identity.backbone_code(backbone) if backbone else ()
    produced = {
        o if isinstance(o, str) else next(iter(o))
        for name, stage in spec.items()
        for o in stage.get("do", stage).get("outs", [])
    }
    files: set[Path] = set()
    for name in stages:
        if name in identity.STAGE_CODE:
            files.update(identity.code_files(identity.training_code(name, backbone), root))
            pretrained = root / params["model"]["pretrained"]
            files.update([pretrained] if pretrained.is_file() else [])
            continue
        skip = ("data/", "reports/", *PRESENTATION, *(REPORTING if name != "evaluate" else ()))
        for dep in spec[name].get("do", spec[name]).get("deps", []):
            dep = dep if isinstance(dep, str) else next(iter(dep))
            if "${" in dep or dep in produced or dep.startswith(skip):
                continue
            found = identity.code_files([dep], root)
            files.update(f for f in found if _decides(f.relative_to(root).as_posix(), own_family))
    return sorted(files)


def _decides(path: str, own: tuple[str, ...]) -> bool:
    """Whether a dep's file can change what a stage computes for a model of the family `own`."""
    other_family = path.startswith(identity.BACKBONES + "/") and path not in own
    return not other_family and path not in identity.NOT_IDENTITY


def content_digest(directory: Path) -> str:
    """sha256 of one dataset's shards by what they hold: dataset.json, skipped.json and every sample
    (split, key, decoded image, label and world pixels) in manifest order. Two packings of the same
    samples digest alike whatever wrote them: PNG compressors and Arrow writers of other library versions
    differ in the bytes, not in the pixels. (Here, not in uniseg/shards/__init__.py, which every stage depends on:
    a change there would make every stored result stale.)"""
    reader, h = ShardReader(directory), hashlib.sha256()
    for name in ("dataset.json", "skipped.json"):
        h.update((reader.directory / name).read_bytes() + b"\0")
    for i in range(len(reader)):
        sample = reader.read(i)
        h.update(f"{sample.split}/{sample.key}".encode() + b"\0")
        for pixels in (sample.image, sample.label, sample.world):
            h.update(b"-" if pixels is None else str(pixels.shape).encode() + pixels.tobytes())
    return h.hexdigest()


_DIGESTS: dict[tuple, str] = {}  # content digests, by the shard files' names, sizes and mtimes


def data_digest(folders: list[Path]) -> str:
    """sha256 of the datasets' shards by content (`content_digest`): results depend on the samples,
    not on the code or the library versions that rendered and packed them (a rewrite of packing, or
    another Pillow's PNG compressor, that gives the same pixels keeps them)."""
    h = hashlib.sha256()
    for folder in map(Path, folders):
        stats = sorted((p.name, p.stat()) for p in folder.rglob("*") if p.is_file())
        key = (str(folder.resolve()), *((name, st.st_size, st.st_mtime_ns) for name, st in stats))
        if key not in _DIGESTS:
            _DIGESTS[key] = content_digest(folder)
        h.update(folder.name.encode() + b"\0" + _DIGESTS[key].encode())
    return h.hexdigest()


def _stage_params(stages: tuple[str, ...], params: dict, root: Path) -> dict:
    """The params the stages declare in dvc.yaml (`seed`, `model`, `relabel.tau`, ...), by dotted key."""
    spec = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    out = {}
    for name in stages:
        for key in spec[name].get("do", spec[name]).get("params", []):
            value = params
            for part in key.split("."):
                value = value[part]
            if isinstance(value, dict):  # a whole section: what it computes, not how it runs
                value = {k: v for k, v in value.items() if k not in NOT_COMPUTATION.get(key, ())}
            out[key] = value
    return out


def fingerprint(stages: tuple[str, ...], params: dict, data: str = "", root: Path = Path(".")) -> str:
    """sha256 of the stages' code (file contents), the data digest and the params the stages declare."""
    h = hashlib.sha256(data.encode())
    identity.hash_files(h, _code_files(stages, params, root), root)
    h.update(json.dumps(_stage_params(stages, params, root), sort_keys=True).encode())
    return h.hexdigest()[:16]
