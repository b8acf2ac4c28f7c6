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
training and of the evaluation (experiments/fingerprints.py: code, pretrained backbone, data by content,
params). A result whose fingerprints are current is never recomputed; one whose evaluation alone is stale
is re-scored from the model kept in `.seeds/` when it is still there. So a headline can be completed over
several sittings, and nobody recomputes what is valid. Each result also records the device it ran on.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

from uniseg.errors import UserError
from uniseg.experiments.fingerprints import compute_device, data_digest, fingerprint
from uniseg.fsio import write_json
from uniseg.params import load_params, parse_params
from uniseg.scores import Metrics, read_relation_metrics

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
    def _stage(self, name: str, *args: str, **options) -> None:
        """Run `python -m stages.<name> ARGS --option value ...` (options' underscores become dashes)."""
        cmd = [sys.executable, "-m", f"stages.{name}", *args]
        for key, value in options.items():
            cmd += [f"--{key.replace('_', '-')}", str(value)]
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
            self._stage("download", name, params=p, out=raw, preview=preview)
            self._stage("shard", name, params=p, raw=raw, out=root / "shards" / name)
        marker.write_text(key)
        self.echo(f"[seeds] world {world}: data rendered and sharded in {time.monotonic() - start:.0f} s")

    def _model(self, world: int, seed: int, arm: str) -> Path:
        return self._run_dir(world, seed) / f"{arm}.pt"

    def _train(self, world: int, seed: int, arm: str) -> dict:
        """Train the arm's model (a base model, or a retrain from its base); returns its relations block."""
        run, shards = self._run_dir(world, seed), self._shards(world)
        p, model, logs = (
            self._params_file(world, seed, arm),
            self._model(world, seed, arm),
            run / "logs" / arm,
        )
        if arm not in BASE:
            self._stage("train", params=p, shards=shards, out=model, log_dir=logs)
            if arm != "nullbce":
                return {}
            base = model
        else:
            base = self._model(world, seed, BASE[arm])
            stamp = base.with_suffix(".fingerprint")
            current = self.fingerprints(world, seed, BASE[arm])["train"]
            if not (base.is_file() and stamp.is_file() and stamp.read_text() == current):
                self.echo(f"[seeds] world {world} seed {seed}: training the {BASE[arm]} base of {arm} first")
                self._train(world, seed, BASE[arm])
                stamp.write_text(current)
        sim, labels, rel = (
            run / f"{arm}.{name}" for name in ("similarity.parquet", "multilabels.parquet", "relations")
        )
        self._stage("mine", params=p, shards=shards, model=base, out=sim)
        self._stage("relabel", params=p, shards=shards, similarity=sim, out=labels, reports=rel)
        if arm in BASE:
            self._stage(
                "retrain", params=p, shards=shards, base=base, multilabels=labels, out=model, log_dir=logs
            )
        return read_relation_metrics(rel / "relations.json")

    def _evaluate(self, world: int, seed: int, arm: str) -> dict:
        run, p = self._run_dir(world, seed), self._params_file(world, seed, arm)
        metrics, details = run / f"{arm}.metrics.json", run / "eval" / arm
        model = self._model(world, seed, arm)
        self._stage(
            "evaluate", params=p, shards=self._shards(world), model=model, metrics=metrics, eval_dir=details
        )
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
