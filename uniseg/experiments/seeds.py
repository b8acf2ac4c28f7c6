"""`make seeds`: the arms of the headline, run per (world, seed), stored with their fingerprints.

Arms (all from params.yaml, with `seed` and `synthetic.seed` = the world set per run):

- `ce`:        softmax CE with a linear head — the paper's multi-dataset baseline;
- `ce-cosine`: softmax CE with the cosine head (optional: `--arm ce-cosine`);
- `nullbce`:   Null BCE with the cosine head; its relations are mined and scored (both candidate rules);
- `crbce`:     that same Null BCE model retrained `retrain.iters` with C-R BCE and the mined relations;
- `control`:   that same Null BCE model retrained as long with no relation (relabel.tau = 1: eq. 6 selects
               nothing, C-R BCE is Null BCE) — what the extra training alone gives.

Each arm runs the pipeline's own stage commands in a scratch folder (`.seeds/`, not in git), so a result
is what `dvc repro` would give with those params. The result — the model's metrics and, where mined, the
relations' scores — goes to `reports/seeds/world<W>/seed<S>-<arm>.json` with two fingerprints: of the
training (the code of the stages that make the model, the pretrained backbone, the training data's
bytes, the params) and of the evaluation (plus the evaluate stage's code and every scored dataset). A result whose fingerprints are current is never
recomputed; one whose evaluation alone is stale is re-scored from the model kept in `.seeds/` when it is
still there. So a headline can be completed over several sittings, and nobody recomputes what is valid.
Each result also records the device it was computed on (`compute_device`): the same code, data and params
give slightly different numbers on a GPU or on a CPU with other vector instructions, so the fingerprints
do not cover the device, but the headline says which seeds ran where.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

from uniseg.errors import UserError
from uniseg.fsio import write_json
from uniseg.params import load_params, parse_params
from uniseg.scores import Metrics, read_relation_metrics
from uniseg.shards import ShardReader

ARMS = ("ce", "ce-cosine", "nullbce", "crbce", "control")
DEFAULT_ARMS = ("ce", "nullbce", "crbce", "control")
OVERRIDES = {  # params of each arm, over params.yaml
    "ce": {"loss": "ce", "model": {"classifier": "linear"}},
    "ce-cosine": {"loss": "ce", "model": {"classifier": "cosine"}},
    "nullbce": {"loss": "nullbce"},
    "crbce": {"loss": "nullbce"},
    "control": {"loss": "nullbce", "relabel": {"tau": 1.0}},
}
BASE = {"crbce": "nullbce", "control": "nullbce"}  # arms retrained from another arm's model
DATASET_STAGES = ("download", "shard")
# The dvc.yaml stages whose code decides an arm's model and mined relations. Their deps include the
# pretrained backbone file (hashed by content); the data enter as the shards' content (data_digest).
ARM_STAGES = {
    "ce": ("train",),
    "ce-cosine": ("train",),
    "nullbce": ("train", "mine", "relabel"),
    "crbce": ("train", "mine", "relabel", "retrain"),
    "control": ("train", "mine", "relabel", "retrain"),
}
# Code that only draws or writes reports (relabel also renders relations.md and the heat map): a change
# there never changes a number, so it does not make results stale.
PRESENTATION = ("uniseg/report", "uniseg/colours.py", "uniseg/datasets/preview.py")
# Params that change how a run is executed or reported, not what it computes.
NOT_COMPUTATION = {"train": {"workers", "checkpoint_every", "log_every"}, "shard": {"workers"}}


def compute_device() -> str:
    """What the stage commands compute on: CUDA when there is a GPU (they pick it), else the CPU, named by
    the vector instructions its kernels use (AVX2 and AVX-512 kernels round differently)."""
    import torch

    if torch.cuda.is_available():
        return f"cuda {torch.cuda.get_device_name(0)}"
    return f"cpu {torch.backends.cpu.get_cpu_capability()}"


def _deep_update(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = _deep_update(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def arm_params(params_file: Path, world: int, seed: int, arm: str) -> dict:
    """The params of one run, as a validated mapping (written to the run's own params file)."""
    base = load_params(params_file).model_dump()
    data = _deep_update(base, {"seed": seed, "synthetic": {"seed": world}, **OVERRIDES[arm]})
    if data["data"]["source"] != "synthetic":
        raise UserError(
            f"{params_file}: data.source is {data['data']['source']!r}; make seeds runs the synthetic benchmark"
        )
    return parse_params(data, str(params_file)).model_dump()


def _code_files(stages: tuple[str, ...], root: Path) -> list[Path]:
    """The code and input files the given dvc.yaml stages depend on: not data, not presentation, and no
    other stage's output (models/base.pt is a dep of mine) but the pretrained backbone's, an input of
    every training here as ImageNet's weights are of the paper's."""
    spec = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    bodies = [spec[name].get("do", spec[name]) for name in stages]
    produced = {
        o if isinstance(o, str) else next(iter(o))
        for name, stage in spec.items()
        if name != "pretrain"
        for o in stage.get("do", stage).get("outs", [])
    }
    files: set[Path] = set()
    for body in bodies:
        for dep in body.get("deps", []):
            dep = dep if isinstance(dep, str) else next(iter(dep))
            if "${" in dep or dep in produced or dep.startswith(("data/", "reports/", *PRESENTATION)):
                continue
            path = root / dep
            found = path.rglob("*") if path.is_dir() else [path]
            files.update(p for p in found if p.is_file() and "__pycache__" not in p.parts)
    return sorted(files)


def content_digest(directory: Path) -> str:
    """sha256 of one dataset's shards by what they hold: dataset.json, skipped.json and every sample
    (split, key, decoded image, label and world pixels) in manifest order. Two packings of the same
    samples digest alike whatever wrote them: PNG compressors and Arrow writers of other library versions
    differ in the bytes, not in the pixels. (Here, not in uniseg/shards.py, which every stage depends on:
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
    for f in _code_files(stages, root):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    h.update(json.dumps(_stage_params(stages, params, root), sort_keys=True).encode())
    return h.hexdigest()[:16]


class Runner:
    """Runs the arms of (world, seed) pairs in `work`, keeping results in `results`."""

    def __init__(self, params_file: Path, work: Path, results: Path, echo=print):
        self.params_file, self.work, self.results, self.echo = params_file, work, results, echo

    # --- where things are ------------------------------------------------------------------------
    def result_path(self, world: int, seed: int, arm: str) -> Path:
        return self.results / f"world{world}" / f"seed{seed}-{arm}.json"

    def _run_dir(self, world: int, seed: int) -> Path:
        return self.work / f"world{world}" / f"seed{seed}"

    def _shards(self, world: int) -> Path:
        return self.work / f"world{world}" / "data" / "shards"

    # --- fingerprints ------------------------------------------------------------------------------
    def fingerprints(self, world: int, seed: int, arm: str) -> dict[str, str]:
        """{"train": of the model (and mined relations), "evaluate": of its scores}."""
        self.ensure_data(world)
        params, shards = arm_params(self.params_file, world, seed, arm), self._shards(world)
        train_data = data_digest([shards / d for d in params["train"]["datasets"]])
        scored = sorted({*params["train"]["datasets"], *params["evaluate"]["unseen"]})
        stages = ARM_STAGES[arm]
        return {
            "train": fingerprint(stages, params, train_data),
            "evaluate": fingerprint((*stages, "evaluate"), params, data_digest([shards / d for d in scored])),
        }

    def status(self, world: int, seed: int, arm: str) -> str:
        """'done', 'evaluate' (the evaluation is stale) or "run" (missing or the training is stale)."""
        path = self.result_path(world, seed, arm)
        if not path.is_file():
            return "run"
        stored = json.loads(path.read_text(encoding="utf-8")).get("fingerprint", {})
        now = self.fingerprints(world, seed, arm)
        if stored.get("train") != now["train"]:
            return "run"
        return "done" if stored.get("evaluate") == now["evaluate"] else "evaluate"

    # --- running -----------------------------------------------------------------------------------
    def _stage(self, *args: str) -> None:
        cmd = [sys.executable, "-m", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise UserError(f"`{' '.join(cmd[2:])}` failed:\n{(proc.stdout + proc.stderr)[-3000:]}")

    def _params_file(self, world: int, seed: int, arm: str) -> Path:
        path = self._run_dir(world, seed) / f"{arm}.params.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(arm_params(self.params_file, world, seed, arm), sort_keys=False))
        return path

    def ensure_data(self, world: int) -> None:
        """Render and shard world `world` once (re-done when the data stages' code or params change)."""
        params = arm_params(self.params_file, world, 0, "nullbce")
        key = fingerprint(DATASET_STAGES, {k: params[k] for k in ("synthetic", "shard", "data")})
        marker = self.work / f"world{world}" / "data" / "fingerprint"
        if marker.is_file() and marker.read_text() == key:
            return
        p = self.work / f"world{world}" / "data.params.yaml"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(yaml.safe_dump(params, sort_keys=False))
        root = self.work / f"world{world}" / "data"
        start = time.monotonic()
        for name in params["evaluate"]["unseen"] + params["train"]["datasets"]:
            raw, preview = root / "raw" / name, root / "previews" / f"{name}.png"
            self._stage(
                "stages.download", name, "--params", str(p), "--out", str(raw), "--preview", str(preview)
            )
            self._stage(
                "stages.shard",
                name,
                "--params",
                str(p),
                "--raw",
                str(raw),
                "--out",
                str(root / "shards" / name),
            )
        marker.write_text(key)
        self.echo(f"[seeds] world {world}: data rendered and sharded in {time.monotonic() - start:.0f} s")

    def _model(self, world: int, seed: int, arm: str) -> Path:
        return self._run_dir(world, seed) / f"{arm}.pt"

    def _train(self, world: int, seed: int, arm: str) -> dict:
        """Train the arm's model (a base model, or a retrain from its base); returns its relations block."""
        run, shards = self._run_dir(world, seed), str(self._shards(world))
        p = str(self._params_file(world, seed, arm))
        model = self._model(world, seed, arm)
        if arm not in BASE:
            self._stage(
                "stages.train",
                "--params",
                p,
                "--shards",
                shards,
                "--out",
                str(model),
                "--log-dir",
                str(run / "logs" / arm),
            )
            if arm != "nullbce":
                return {}
            base = model
        else:
            base = self._model(world, seed, BASE[arm])
            stamp = base.with_suffix(".fingerprint")
            if not (
                base.is_file()
                and stamp.is_file()
                and stamp.read_text() == self.fingerprints(world, seed, BASE[arm])["train"]
            ):
                self.echo(f"[seeds] world {world} seed {seed}: training the {BASE[arm]} base of {arm} first")
                self._train(world, seed, BASE[arm])
                stamp.write_text(self.fingerprints(world, seed, BASE[arm])["train"])
        sim, labels, rel = (
            run / f"{arm}.similarity.parquet",
            run / f"{arm}.multilabels.parquet",
            run / f"{arm}.relations",
        )
        self._stage("stages.mine", "--params", p, "--shards", shards, "--model", str(base), "--out", str(sim))
        self._stage(
            "stages.relabel",
            "--params",
            p,
            "--shards",
            shards,
            "--similarity",
            str(sim),
            "--out",
            str(labels),
            "--reports",
            str(rel),
        )
        if arm in BASE:
            self._stage(
                "stages.retrain",
                "--params",
                p,
                "--shards",
                shards,
                "--base",
                str(base),
                "--multilabels",
                str(labels),
                "--out",
                str(model),
                "--log-dir",
                str(run / "logs" / arm),
            )
        return read_relation_metrics(rel / "relations.json")

    def _evaluate(self, world: int, seed: int, arm: str) -> dict:
        run = self._run_dir(world, seed)
        metrics, details = run / f"{arm}.metrics.json", run / "eval" / arm
        self._stage(
            "stages.evaluate", "--params", str(self._params_file(world, seed, arm)), "--shards", str(self._shards(world)),
            "--model", str(self._model(world, seed, arm)), "--metrics", str(metrics), "--eval-dir", str(details),
        )  # fmt: skip
        return Metrics.read(metrics).data[arm]

    def run(self, world: int, seed: int, arm: str) -> str:
        """Bring one result up to date; returns what was done ("kept", "re-evaluated", "ran")."""
        state = self.status(world, seed, arm)
        model, stamp = (
            self._model(world, seed, arm),
            self._model(world, seed, arm).with_suffix(".fingerprint"),
        )
        prints = self.fingerprints(world, seed, arm)
        if state == "done":
            return "kept"
        if state == "evaluate" and not (
            model.is_file() and stamp.is_file() and stamp.read_text() == prints["train"]
        ):
            state = "run"  # the model it came from is gone: train it again
        start = time.monotonic()
        path = self.result_path(world, seed, arm)
        if state == "run":
            relations = self._train(world, seed, arm)
            stamp.write_text(prints["train"])
        else:
            relations = json.loads(path.read_text(encoding="utf-8")).get("relations", {})
        metrics = self._evaluate(world, seed, arm)
        record = {
            "world": world,
            "seed": seed,
            "arm": arm,
            "fingerprint": prints,
            "seconds": round(time.monotonic() - start),
            "device": compute_device(),
            "metrics": metrics,
            "relations": relations,
        }
        if state == "evaluate":  # keep the training cost and device of the first run
            first = json.loads(path.read_text(encoding="utf-8"))
            record["seconds"] = first.get("seconds", record["seconds"])
            record["device"] = first.get("device", record["device"])
        write_json(path, record, indent=1)
        return "ran" if state == "run" else "re-evaluated"
