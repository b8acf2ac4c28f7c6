"""`make seeds`: the arms of the headline, run per (world, seed), stored with their fingerprints.

The arms and their params are in experiments/arms.py.

Each arm runs the pipeline's own stage commands in a scratch folder (`.seeds/`, not in git), so a result
is what `dvc repro` would give with those params. The result — the model's metrics and, where mined, the
relations' scores — goes to `reports/seeds/<profile>/world<W>/seed<S>-<arm>.json` with two fingerprints: of the
training and of the evaluation (experiments/fingerprints.py: code, pretrained backbone, data by content,
params). A result whose fingerprints are current is never recomputed; one whose evaluation alone is stale
is re-scored from the model kept in `.seeds/` when it is still there. So a headline can be completed over
several sittings, and nobody recomputes what is valid. Each result also records the device it ran on and
its cost in seconds (training and evaluation; an arm whose training resumed an earlier sitting's
checkpoint counts that sitting's training too, from the checkpoint's clock, and says how much in
`seconds_carried`).

Runs are crash-safe and may be concurrent: every file is written atomically (a killed run leaves no
half-written result, a rerun does what is missing), each (world, seed, arm) and each world's data are
built under an exclusive lock (a second runner on the same folders waits, then finds the work done), and
`run_all(..., jobs=N)` runs N independent arms at once, a retrained arm after its Null BCE model.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from uniseg.errors import UserError
from uniseg.experiments.arms import ARM_STAGES, BASE, DATASET_STAGES, ORACLES, arm_params, oracle
from uniseg.experiments.fingerprints import compute_device, data_digest, fingerprint
from uniseg.fsio import write_json, write_text
from uniseg.scores import Metrics, read_relation_metrics


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive lock on `path` (created if need be) for the block; the kernel drops it when the
    process dies, so a killed runner never leaves a lock behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Runner:
    """Runs the arms of (world, seed) pairs in `work`, keeping results in `results`. threads: CPU threads
    per stage process (None: torch's default, all cores)."""

    # A training stage's progress lines are echoed (with the arm's label) at most once in this many
    # seconds: an arm of the ladder trains for an hour or more.
    progress_every = 60.0

    def __init__(self, params_file: Path, work: Path, results: Path, echo=print, threads: int | None = None):
        self.params_file, self.work, self.results, self.echo = params_file, work, results, echo
        self.threads = threads

    # --- where things are ------------------------------------------------------------------------
    def result_path(self, world: int, seed: int, arm: str) -> Path:
        return self.results / f"world{world}" / f"seed{seed}-{arm}.json"

    def _run_dir(self, world: int, seed: int) -> Path:
        return self.work / f"world{world}" / f"seed{seed}"

    def _shards(self, world: int) -> Path:
        return self.work / f"world{world}" / "data" / "shards"

    def _model(self, world: int, seed: int, arm: str) -> Path:
        return self._run_dir(world, seed) / f"{arm}.pt"

    def _lock(self, world: int, seed: int | None = None, arm: str = "data") -> Path:
        name = f"world{world}" + ("" if seed is None else f"-seed{seed}") + f"-{arm}.lock"
        return self.work / "locks" / name

    # --- fingerprints ------------------------------------------------------------------------------
    def fingerprints(self, world: int, seed: int, arm: str, code: Path = Path(".")) -> dict[str, str]:
        """{"train": of the model (and mined relations), "evaluate": of its scores}; `code`: the checkout
        whose code files are hashed (this one by default; `restamp` also asks an earlier commit's)."""
        self.ensure_data(world)
        params, shards = arm_params(self.params_file, world, seed, arm), self._shards(world)
        train_data = data_digest([shards / d for d in params["train"]["datasets"]])
        if arm in ORACLES:
            train_data += json.dumps(oracle(params, arm))
        scored = sorted({*params["train"]["datasets"], *params["evaluate"]["unseen"]})
        stages = ARM_STAGES[arm]
        scored_data = data_digest([shards / d for d in scored])
        return {
            "train": fingerprint(stages, params, train_data, code),
            "evaluate": fingerprint((*stages, "evaluate"), params, scored_data, code),
        }

    def restamp(self, world: int, seed: int, arm: str, before: Path, write: bool = False) -> str:
        """Carry one stored result (and its kept model's stamp) over a change of code that computes the same
        numbers: "restamped" when its fingerprints are what the code at `before` gives (it was current
        there) and the current code's differ, "current" when they are the current code's already, "left
        alone" otherwise (stale before the change too: `make seeds` recomputes it). Writes with `write`."""
        path = self.result_path(world, seed, arm)
        record = json.loads(path.read_text(encoding="utf-8"))
        now = self.fingerprints(world, seed, arm)
        if record.get("fingerprint") == now:
            return "current"
        old = self.fingerprints(world, seed, arm, before)
        if record.get("fingerprint") != old:
            return "left alone"
        if write:
            write_json(path, {**record, "fingerprint": now}, indent=1)
            stamp = self._model(world, seed, arm).with_suffix(".fingerprint")
            if stamp.is_file() and stamp.read_text() == old["train"]:
                write_text(stamp, now["train"])
        return "restamped"

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

    def precision(self, world: int, seed: int, arm: str) -> str:
        """What the arm's training computes in here: "bf16" or "float32" (`engine.precision`: the
        profile's train.amp / train.amp_cpu and what this machine has)."""
        import torch

        from uniseg.params import TrainParams
        from uniseg.train.engine import precision

        train = TrainParams(**arm_params(self.params_file, world, seed, arm)["train"])
        return precision(train, torch.device("cuda" if torch.cuda.is_available() else "cpu"))

    # --- running -----------------------------------------------------------------------------------
    def _stage(self, name: str, *args: str, label: str = "", **options) -> None:
        """Run `python -m stages.<name> ARGS --option value ...` (options' underscores become dashes). With
        a `label`, its progress lines (" iteration ") are echoed as it runs: the first, then one every
        `progress_every` seconds at most; the rest of its output is shown only when it fails."""
        cmd = [sys.executable, "-m", f"stages.{name}", *args]
        for key, value in options.items():
            cmd += [f"--{key.replace('_', '-')}", str(value)]
        env = dict(os.environ)
        if self.threads:
            env["OMP_NUM_THREADS"] = str(self.threads)
        tail, shown = collections.deque(maxlen=400), -math.inf
        with subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        ) as proc:
            for line in proc.stdout:
                tail.append(line)
                if label and " iteration " in line and time.monotonic() - shown >= self.progress_every:
                    self.echo(f"  [{label}] {line.strip()}")
                    shown = time.monotonic()
        if proc.returncode != 0:
            raise UserError(f"`{' '.join(cmd[2:])}` failed:\n{''.join(tail)[-3000:]}")

    def _params_file(self, world: int, seed: int, arm: str) -> Path:
        path = self._run_dir(world, seed) / f"{arm}.params.yaml"
        write_text(path, yaml.safe_dump(arm_params(self.params_file, world, seed, arm), sort_keys=False))
        return path

    def ensure_data(self, world: int) -> None:
        """Render and shard world `world` once (re-done when the data stages' code or params change)."""
        params = arm_params(self.params_file, world, 0, "nullbce")
        names = params["evaluate"]["unseen"] + params["train"]["datasets"]
        # The datasets rendered belong to the key: a profile that scores no unseen set (the ladder's rungs)
        # renders them once it does.
        key = fingerprint(DATASET_STAGES, {k: params[k] for k in ("synthetic", "shard", "data")}) + " ".join(
            names
        )
        marker = self.work / f"world{world}" / "data" / "fingerprint"
        if marker.is_file() and marker.read_text() == key:
            return
        with locked(self._lock(world)):
            if marker.is_file() and marker.read_text() == key:  # another runner made it meanwhile
                return
            p = self.work / f"world{world}" / "data.params.yaml"
            write_text(p, yaml.safe_dump(params, sort_keys=False))
            root, start = self.work / f"world{world}" / "data", time.monotonic()
            for name in names:
                raw, preview = root / "raw" / name, root / "previews" / f"{name}.png"
                self._stage("download", name, params=p, out=raw, preview=preview)
                self._stage("shard", name, params=p, raw=raw, out=root / "shards" / name)
            write_text(marker, key)
        self.echo(f"[seeds] world {world}: data rendered and sharded in {time.monotonic() - start:.0f} s")

    def _base_model(self, world: int, seed: int, arm: str) -> tuple[Path, float]:
        """The current model of arm `arm` (a base), trained first when missing or stale; and the
        seconds spent training it here (0 when it was current)."""
        model, current = self._model(world, seed, arm), self.fingerprints(world, seed, arm)["train"]
        stamp, start = model.with_suffix(".fingerprint"), time.monotonic()
        with locked(self._lock(world, seed, arm)):
            if model.is_file() and stamp.is_file() and stamp.read_text() == current:
                return model, 0.0
            self.echo(f"[seeds] world {world} seed {seed}: training the {arm} base first")
            self._train(world, seed, arm)
            write_text(stamp, current)
        return model, time.monotonic() - start

    def _train(self, world: int, seed: int, arm: str) -> tuple[dict, float]:
        """Train the arm's model (a base model, or a retrain from its base); returns its relations block
        and the seconds spent on its base model, when that had to be trained first."""
        run, shards, base_seconds = self._run_dir(world, seed), self._shards(world), 0.0
        label = f"world {world} seed {seed} {arm}"
        p, model, logs = (
            self._params_file(world, seed, arm),
            self._model(world, seed, arm),
            run / "logs" / arm,
        )
        if arm not in BASE:
            self._stage("train", params=p, shards=shards, out=model, log_dir=logs, label=label)
            if arm != "nullbce":
                return {}, base_seconds
            base = model
        else:
            base, base_seconds = self._base_model(world, seed, BASE[arm])
        labels = run / f"{arm}.multilabels.parquet"
        if arm in ORACLES:
            _write_relations(oracle(arm_params(self.params_file, world, seed, arm), arm), labels)
        else:
            sim, rel = run / f"{arm}.similarity.parquet", run / f"{arm}.relations"
            self._stage("mine", params=p, shards=shards, model=base, out=sim)
            self._stage("relabel", params=p, shards=shards, similarity=sim, out=labels, reports=rel)
        block = self._relations(world, seed, arm)
        if arm in BASE:
            self._stage(
                "retrain", params=p, shards=shards, base=base, multilabels=labels, out=model, log_dir=logs,
                label=label,
            )  # fmt: skip
        return block, base_seconds

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
        with locked(self._lock(world, seed, arm)):
            return self._run(world, seed, arm)

    def _run(self, world: int, seed: int, arm: str) -> str:
        state = self.status(world, seed, arm)
        if state == "done":
            return "kept"
        model, prints = self._model(world, seed, arm), self.fingerprints(world, seed, arm)
        stamp = model.with_suffix(".fingerprint")
        trained = model.is_file() and stamp.is_file() and stamp.read_text() == prints["train"]
        # A current model in .seeds/ is scored again, not retrained — also when its evaluation failed or
        # was killed before a result was written.
        state = "evaluate" if trained else "run"
        start = time.monotonic()
        path = self.result_path(world, seed, arm)
        base_seconds = 0.0  # a base model trained first for this arm: its cost is the base arm's
        carried = 0.0  # its training in earlier processes (sessions) that this one resumed
        if state == "run":
            from uniseg.train.checkpoints import carried_seconds, checkpoint_path

            relations, base_seconds = self._train(world, seed, arm)
            carried = carried_seconds(checkpoint_path(model))
            write_text(stamp, prints["train"])
        else:
            relations = self._relations(world, seed, arm)
        metrics = self._evaluate(world, seed, arm)
        record = {
            "world": world,
            "seed": seed,
            "arm": arm,
            "fingerprint": prints,
            "seconds": round(time.monotonic() - start - base_seconds + carried),
            "device": compute_device(self.threads),
            "precision": self.precision(world, seed, arm),
            "profile": self.results.name,
            "metrics": metrics,
            "relations": relations,
        }
        if carried:
            record["seconds_carried"] = round(carried)  # of "seconds": trained before a resume
        if state == "evaluate" and path.is_file():  # keep the training cost and device of the first run
            first = json.loads(path.read_text(encoding="utf-8"))
            record["seconds"] = first.get("seconds", record["seconds"])
            if "seconds_carried" in first:
                record["seconds_carried"] = first["seconds_carried"]
            record["device"] = first.get("device", record["device"])
            record["precision"] = first.get("precision", record["precision"])
        write_json(path, record, indent=1)
        return "ran" if state == "run" else "re-evaluated"

    def _relations(self, world: int, seed: int, arm: str) -> dict:
        """The relations block of a trained arm, from what its training left in .seeds/: the mined
        relations' scores (relations.json) and the triples themselves, (dataset, class, secondary,
        similarity) as relabel chose them, so a result's recall and precision can be audited seed by
        seed; an oracle arm's block is its true relations."""
        if arm in ORACLES:
            relations = oracle(arm_params(self.params_file, world, seed, arm), arm)
            return {"oracle": [list(r) for r in relations], "relations": len(relations)}
        if arm != "nullbce" and arm not in BASE:
            return {}
        run = self._run_dir(world, seed)
        block = read_relation_metrics(run / f"{arm}.relations" / "relations.json") or {}
        labels = run / f"{arm}.multilabels.parquet"
        return {**block, "triples": _read_triples(labels)} if block and labels.is_file() else block

    def run_all(self, jobs: list[tuple[int, int, str]], workers: int = 1, dry_run: bool = False):
        """Bring every (world, seed, arm) of `jobs` up to date, `workers` at a time; yields (job, what was
        done, seconds) as each finishes. Each world's data is made first; an arm retrained from a base
        starts after that base (when both are among the jobs)."""
        for world in dict.fromkeys(w for w, _, _ in jobs):
            self.ensure_data(world)
        if dry_run:
            for job in jobs:
                yield job, self.status(*job), 0.0
            return
        order = sorted(jobs, key=lambda j: j[2] in BASE)  # bases are queued (and so started) first
        futures: dict = {}

        def one(job):
            world, seed, arm = job
            base = (world, seed, BASE.get(arm))
            if base in futures:
                futures[base].result()
            start = time.monotonic()
            return self.run(*job), time.monotonic() - start

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for job in order:
                futures[job] = pool.submit(one, job)
            for job in jobs:
                done, seconds = futures[job].result()
                yield job, done, seconds


def _read_triples(path: Path) -> list[list]:
    """The relations of a multi-label table as [dataset, class, secondary, similarity] rows, in its order."""
    from uniseg.relations.mining import MULTILABEL_COLUMNS, read_multilabels

    table = read_multilabels(path)[MULTILABEL_COLUMNS]
    return [[d, c, c2, round(float(s), 4)] for d, c, c2, s in table.itertuples(index=False)]


def _write_relations(relations: list[tuple[str, str, str]], path: Path) -> None:
    """The oracle's relations as a multi-label table (no mined similarity)."""
    import pandas as pd

    from uniseg.relations.mining import MULTILABEL_COLUMNS, write_multilabels

    rows = [(d, p, s, float("nan")) for d, p, s in relations]
    write_multilabels(pd.DataFrame(rows, columns=MULTILABEL_COLUMNS), path)
