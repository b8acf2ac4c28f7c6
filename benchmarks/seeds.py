"""`make seeds`: the headline of the embedded benchmark over several seeds, honestly.

For each seed run the whole pipeline as DVC experiments in temporary directories (`dvc exp run
--temp -S seed=S ...`; the data stages come from the cache, only training and later stages run), one
per arm:

- `ce`: CE base model;
- `nullbce`: Null BCE base model, and the C-R BCE model retrained from it with the mined relations;
- `nullbce-tau1`: the same Null BCE base (trained again: the train stage's persistent checkpoint
  keeps it out of DVC's run cache; same seed, same weights) retrained with `relabel.tau=1.0`: no relation passes τ = 1, so the retrain is plain Null BCE fine-tuning for the
  same iterations — the control that separates the relations' effect from that of more training.

Then collect from `dvc exp show --json`: unseen mean mIoU of each model, the cross-label-space
conflict classes (rider, road), and the relations mined from each base. Writes
`reports/headline.json` (mean, std, 95% interval, per seed) and `reports/headline.md`.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

from uniseg.experiments import run_dvc as _dvc
from uniseg.fsio import write_json, write_text

METRICS_FILES = ("reports/metrics.json", "reports/relations.json")
# arm -> the `-S` overrides of its experiment.
ARMS = {
    "ce": ("loss=ce",),
    "nullbce": ("loss=nullbce",),
    "nullbce-tau1": ("loss=nullbce", "relabel.tau=1.0"),
}
# headline row -> (arm, model in that arm's metrics, description).
MODELS = {
    "ce": ("ce", "base", "CE base model"),
    "nullbce": ("nullbce", "base", "Null BCE base model"),
    "nullbce+ft": (
        "nullbce-tau1",
        "crbce",
        "Null BCE base + retrain.iters of Null BCE (τ = 1: no relations)",
    ),
    "crbce": ("nullbce", "crbce", "Null BCE base + retrain.iters of C-R BCE (mined relations)"),
}
# Student t quantiles (two-sided 95%) for n-1 degrees of freedom, n = 2..10.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def summarise(values: list[float]) -> dict:
    """mean, sample std and a 95% t-interval of per-seed values (percent)."""
    n = len(values)
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if n > 1 else 0.0
    half = T95.get(n - 1, 1.96) * std / math.sqrt(n) if n > 1 else 0.0
    return {
        "mean": round(mean, 2),
        "std": round(std, 2),
        "ci95": [round(mean - half, 2), round(mean + half, 2)],
        "per_seed": [round(v, 2) for v in values],
    }


def experiment_metrics(name: str) -> dict:
    """The metrics of the named experiment (metrics.json and relations.json merged), from
    `dvc exp show --json`."""
    # --all-commits: an experiment belongs to the commit it started from, which may not be HEAD now.
    shown = json.loads(_dvc("exp", "show", "--json", "--no-fetch", "--all-commits"))
    for commit in shown:
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs", []):
                if rev.get("name") == name:
                    files = (rev.get("data") or {}).get("metrics", {})
                    merged: dict = {}
                    for path in METRICS_FILES:
                        merged.update(files.get(path, {}).get("data", {}))
                    return merged
    sys.exit(f"error: experiment {name} not found in `dvc exp show`")


def _git_head() -> str:
    import subprocess

    return subprocess.run(
        ["git", "rev-parse", "--short=7", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()


def _get(d: dict, dotted: str) -> float | None:
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return float(d) if isinstance(d, int | float) else None


def collect(runs: dict[tuple[int, str], dict], seeds: list[int]) -> dict:
    """headline.json from per-(seed, arm) metrics dictionaries. A row covers the seeds its arm was run
    for (listed under "seeds" when that is not all of them); an arm run for no seed is left out."""
    out: dict = {}
    cross: dict = {}
    for label, (loss, model, _) in MODELS.items():
        ran = [s for s in seeds if (s, loss) in runs]
        if not ran:
            continue
        values = [_get(runs[(s, loss)], f"{model}.unseen.mean") for s in ran]
        out[label] = summarise([v for v in values if v is not None])
        if ran != seeds:
            out[label]["seeds"] = ran
        entry = {}
        for key in ("mean", "mapillary_in_cityscapes.iou.rider", "mapillary_in_cityscapes.iou.road"):
            vals = [_get(runs[(s, loss)], f"{model}.cross.{key}") for s in ran]
            vals = [v for v in vals if v is not None]
            if vals:
                entry[key] = summarise(vals)
        own = [_get(runs[(s, loss)], f"{model}.seen.cityscapes.iou.rider") for s in ran]
        if any(v is not None for v in own):
            entry["cityscapes_in_cityscapes.rider"] = summarise([v for v in own if v is not None])
        cross[label] = entry
    out["cross"] = cross
    # Relation mining from each base model (C-R BCE retrains from the Null BCE base's relations).
    out["relations"] = {}
    for loss in ("ce", "nullbce"):
        if any((s, loss) not in runs for s in seeds):
            continue
        entry = {}
        for key in ("tau", "relations", "precision", "recall"):
            vals = [_get(runs[(s, loss)], f"relations.{key}") for s in seeds]
            vals = [v for v in vals if v is not None]
            if vals:
                entry[key] = summarise(vals)
        out["relations"][loss] = entry
    out["seeds"] = seeds
    return out


def render(headline: dict) -> str:
    lines = [
        "# Headline over seeds (embedded synthetic benchmark)",
        "",
        f"Seeds: {', '.join(map(str, headline['seeds']))}. Unseen mean mIoU (%), restricted protocol; "
        "mean ± std and a 95% t-interval over seeds. `nullbce+ft` is the control for `crbce`: the same "
        "base model trained for the same extra iterations without relations.",
        "",
        "| model | what | mean | std | 95% interval | per seed |",
        "|---|---|---|---|---|---|",
    ]
    for label, (_, _, what) in MODELS.items():
        h = headline.get(label)
        if not h or not h.get("per_seed"):
            continue
        if "seeds" in h:
            what += f" (seed {', '.join(map(str, h['seeds']))} only)"
        lines.append(
            f"| {label} | {what} | {h['mean']:.1f} | {h['std']:.1f} | [{h['ci95'][0]:.1f}, {h['ci95'][1]:.1f}] | "
            + ", ".join(f"{v:.1f}" for v in h["per_seed"])
            + " |"
        )
    lines += [
        "",
        "Cross-label-space evaluation (mapillary-style images scored in cityscapes' label space):",
        "",
    ]
    lines += ["| model | metric | mean | std | 95% interval |", "|---|---|---|---|---|"]
    for label in MODELS:
        for key, h in headline["cross"].get(label, {}).items():
            lines.append(
                f"| {label} | {key} | {h['mean']:.1f} | {h['std']:.1f} | [{h['ci95'][0]:.1f}, {h['ci95'][1]:.1f}] |"
            )
    lines += [
        "",
        "Relations mined from each base model against the benchmark's ground truth (`relations.*`):",
        "",
        "| base model | metric | mean | std | per seed |",
        "|---|---|---|---|---|",
    ]
    for loss, entry in headline.get("relations", {}).items():
        for key, h in entry.items():
            lines.append(
                f"| {loss} | {key} | {h['mean']:.3g} | {h['std']:.2g} | "
                + ", ".join(f"{v:.3g}" for v in h["per_seed"])
                + " |"
            )
    if headline.get("commit"):
        lines += ["", f"Experiments run from commit `{headline['commit']}`."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", default="reports/headline.json")
    parser.add_argument("--rerun", action="store_true", help="rerun experiments that already exist")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS), help="which arms to run")
    args = parser.parse_args()
    # Experiments are named after the commit they run from, so results of older code are never reused.
    commit = _git_head()
    runs = {}
    for seed in args.seeds:
        for arm in args.arms:
            name = f"seed{seed}-{arm}-{commit}"
            start = time.monotonic()
            print(f"[seeds] running {name} ...", flush=True)
            done = name in _dvc("exp", "list", "--all-commits", "--name-only").split()
            if done and not args.rerun:
                print(f"[seeds] {name} exists (pass --rerun to run it again)", flush=True)
            else:
                if done:
                    _dvc("exp", "remove", name)
                overrides = [x for kv in (f"seed={seed}", *ARMS[arm]) for x in ("-S", kv)]
                _dvc("exp", "run", "--temp", "-n", name, *overrides)
            runs[(seed, arm)] = experiment_metrics(name)
            print(f"[seeds] {name} done in {time.monotonic() - start:.0f} s", flush=True)
    # Arms not asked for this time are still reported for the seeds they were run for earlier.
    existing = set(_dvc("exp", "list", "--all-commits", "--name-only").split())
    for seed in args.seeds:
        for arm in ARMS:
            if arm not in args.arms and f"seed{seed}-{arm}-{commit}" in existing:
                runs[(seed, arm)] = experiment_metrics(f"seed{seed}-{arm}-{commit}")
    headline = collect(runs, args.seeds)
    headline["commit"] = commit
    write_json(args.out, headline)
    write_text(Path(args.out).with_suffix(".md"), render(headline))
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.md')}")


if __name__ == "__main__":
    main()
