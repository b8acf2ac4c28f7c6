"""Reliability and security: faults, bad input and untrusted files not covered elsewhere, and the
table of every such case (reports/reliability.md), kept in sync with the tests by a test."""

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from uniseg.datasets.layout import DatasetMeta, write_meta
from uniseg.errors import UserError
from uniseg.fsio import write_json
from uniseg.shards import ShardReader
from uniseg.shards.packing import write_shards

ROOT = Path(__file__).resolve().parents[1]

# (case, expected behaviour, test) — rendered into reports/reliability.md.
CASES = [
    (
        "truncated / zero-byte image",
        "one line naming the file; no output left",
        "test_shards.py::test_bad_samples_fail_with_the_file_named_and_leave_no_output",
    ),
    (
        "label PNG of the wrong size or mode",
        "one line naming the file; no output left",
        "test_shards.py::test_bad_samples_fail_with_the_file_named_and_leave_no_output",
    ),
    (
        "label value outside the dataset's table",
        "one line naming file and value",
        "test_real_datasets.py::test_bad_real_data_is_one_clear_error_and_no_output",
    ),
    (
        "image without label and vice versa",
        "one line naming the file",
        "test_real_datasets.py::test_bad_real_data_is_one_clear_error_and_no_output",
    ),
    ("empty split / empty dataset", "clear error", "test_shards.py::test_empty_dataset_is_a_clear_error"),
    (
        "skip_corrupt",
        "every skipped file listed",
        "test_shards.py::test_skip_corrupt_lists_every_skipped_file",
    ),
    (
        "duplicate keys across datasets",
        "allowed: keys are per dataset; both samples are trained on",
        "test_reliability.py::test_duplicate_keys_across_datasets_are_kept_apart",
    ),
    (
        "non-UTF-8 file names",
        "indexed and packed with a sanitised key",
        "test_real_datasets.py::test_non_utf8_file_names_are_indexed_and_packed",
    ),
    (
        "a source file changed after indexing",
        "refused, naming the file and the rescan command (even with data.skip_corrupt)",
        "test_shards.py::test_a_source_file_changed_after_indexing_is_refused_even_when_skipping",
    ),
    (
        "unknown params key, wrong type, out of range",
        "key path and valid choices, before heavy work",
        "test_params.py::test_bad_values_are_named",
    ),
    (
        "unknown dataset / backbone / loss name",
        "key path and valid choices",
        "test_params.py::test_bad_values_are_named",
    ),
    (
        "test dataset with no class in the model's union",
        "clear error",
        "test_evaluation.py::test_a_test_space_with_no_class_in_the_union_is_a_clear_error",
    ),
    (
        "kill -9 during shard writing",
        "no shard accepted; rerun finishes",
        "test_reliability.py::test_kill_during_shard_writing_leaves_nothing_that_is_accepted",
    ),
    (
        "kill -9 during training",
        "rerunning resumes and gives the uninterrupted run's weights",
        "test_engine.py::test_kill_9_mid_training_then_rerun_gives_the_uninterrupted_weights",
    ),
    (
        "kill -9 during mining / evaluation (at the first rename of a finished output)",
        "no output in place; rerunning gives the uninterrupted run's output",
        "test_reliability.py::test_kill_9_during_mining_or_evaluation_then_rerun_finishes",
    ),
    (
        "disk full during a write",
        "clear error; previous output intact",
        "test_reliability.py::test_disk_full_is_a_clear_error_and_keeps_the_previous_output",
    ),
    (
        "NaN loss",
        "stops with the iteration named",
        "test_engine.py::test_nan_loss_stops_with_the_iteration_named",
    ),
    (
        "model file that would run code",
        "refused (weights_only)",
        "test_models.py::test_a_model_file_that_would_run_code_is_refused",
    ),
    (
        "archive with ../ members or links",
        "refused, nothing written",
        "test_real_datasets.py::test_archives_with_traversal_or_links_are_refused",
    ),
    (
        "download checksum mismatch",
        "clear error, partial file removed",
        "test_real_datasets.py::test_fetch_verifies_and_resumes",
    ),
    (
        "predict: unreadable image, not a model, unknown label space",
        "other images processed, failures listed, exit 1",
        "test_reliability.py::test_predict_reports_bad_inputs_and_writes_only_under_out",
    ),
    (
        "predict over many images",
        "peak memory does not grow with the image count; throughput printed",
        "test_reliability.py::test_predict_memory_does_not_grow_with_the_number_of_images",
    ),
    (
        "WildDash 2 panoptic mask with a segment its panoptic.json does not list",
        "one line naming the mask, the segment and the file",
        "test_wilddash2.py::test_a_segment_the_panoptic_file_does_not_list_is_named",
    ),
    (
        "optional dataset (WildDash 2) absent",
        "recorded as absent, the pipeline runs; evaluating it says what to download",
        "test_wilddash2.py::test_an_absent_optional_dataset_is_recorded_and_passed_on",
    ),
    (
        "submission with an unreadable image, a file that is no model, a label space without a format, no θ",
        "one line each, exit 1, no zip (nothing half-written)",
        "test_wilddash2.py::test_bad_inputs_get_one_line_and_no_zip",
    ),
    (
        "`make seeds` killed (kill -9) mid-run",
        "no result written; a rerun completes only what is missing",
        "test_experiments.py::test_a_killed_run_leaves_no_result_and_a_rerun_completes_it",
    ),
    (
        "two `make seeds` runners on the same folders",
        "each result computed once, whole (an exclusive lock per arm and per world's data)",
        "test_experiments.py::test_two_runners_on_the_same_folders_do_the_work_once",
    ),
    (
        "`uniseg score`: a missing or extra prediction, a size mismatch, an id outside the space, an "
        "unreadable or colour PNG",
        "one line naming the file; nothing written",
        "test_score.py::test_bad_predictions_are_one_error_naming_the_file",
    ),
    (
        "`uniseg export` / `predict --runtime`: not a model file, the wrong runtime for the file",
        "one line; nothing written",
        "test_export.py::test_the_wrong_file_or_runtime_is_one_line",
    ),
]


def render_table() -> str:
    lines = [
        "# Reliability",
        "",
        "Every case below is a test in `tests/` (run by `make test`); this file is checked against them by",
        "`tests/test_reliability.py::test_reliability_table_is_in_sync`.",
        "",
        "| case | expected behaviour | test |",
        "|---|---|---|",
    ]
    lines += [f"| {case} | {expected} | `{test}` |" for case, expected, test in CASES]
    return "\n".join(lines) + "\n"


def test_reliability_table_is_in_sync():
    for _, _, test in CASES:
        module, name = test.split("::")
        text = (ROOT / "tests" / module).read_text(encoding="utf-8")
        assert f"def {name}(" in text, f"{test} does not exist"
    path = ROOT / "reports" / "reliability.md"
    assert path.is_file() and path.read_text(encoding="utf-8") == render_table(), (
        "reports/reliability.md is out of date: python -m tests.test_reliability"
    )


def _dataset(root, name="toy", n=3, keys=None):
    (root / "train").mkdir(parents=True)
    for k, key in enumerate(keys or [f"s{i}" for i in range(n)]):
        Image.new("RGB", (32, 32), (k * 40, 0, 0)).save(root / "train" / f"{key}.png")
        Image.fromarray(np.full((32, 32), k % 2, dtype=np.uint8)).save(root / "train" / f"{key}.label.png")
    write_meta(root, DatasetMeta(name, "real", ["road", "car"], {"train": n}))


def test_duplicate_keys_across_datasets_are_kept_apart(tmp_path):
    from uniseg.train.loader import TrainSet

    _dataset(tmp_path / "raw_a", "a", keys=["x0", "x1"])
    _dataset(tmp_path / "raw_b", "b", keys=["x0", "x1"])
    write_shards(tmp_path / "raw_a", tmp_path / "a", 32, progress=False)
    write_shards(tmp_path / "raw_b", tmp_path / "b", 32, progress=False)
    data = TrainSet([tmp_path / "a", tmp_path / "b"], ["car", "road"], (32, 32), (1.0, 1.0))
    assert len(data) == 4 and sorted(d for d, _ in data.items) == [0, 0, 1, 1]


def test_kill_during_shard_writing_leaves_nothing_that_is_accepted(tmp_path):
    raw = tmp_path / "raw"
    _dataset(raw, n=400)
    code = (
        "import sys, time; import uniseg.shards.packing as s\n"
        "real = s._process\n"
        "def slow(job):\n    time.sleep(0.01); return real(job)\n"
        "s._process = slow\n"
        f"s.write_shards({str(raw)!r}, {str(tmp_path / 'out')!r}, 32, 50, 1, progress=False)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    deadline = time.time() + 60
    while time.time() < deadline and not any(p.name.startswith(".out.") for p in tmp_path.iterdir()):
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "out").exists(), "a killed writer never leaves a shard folder in place"
    with pytest.raises(UserError, match="no manifest.parquet"):
        ShardReader(tmp_path / "out")
    write_shards(raw, tmp_path / "out", 32, 50, 1, progress=False)
    assert len(ShardReader(tmp_path / "out")) == 400


def test_disk_full_is_a_clear_error_and_keeps_the_previous_output(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    write_json(target, {"old": 1})

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(UserError, match="no space left on the device"):
        write_json(target, {"new": 2})
    monkeypatch.undo()
    assert target.read_text().strip().replace(" ", "").replace("\n", "") == '{"old":1}'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"], "no temporary left behind"


@pytest.mark.slow
def test_predict_reports_bad_inputs_and_writes_only_under_out(tmp_path):
    import torch

    from uniseg.model.segmodel import ModelInfo, build_model, save_model_file

    torch.manual_seed(0)
    union = ["car", "road", "sky"]
    model = build_model("hrnet_w18_small", "cosine", len(union))
    save_model_file(
        tmp_path / "m.pt", model, ModelInfo(union, "hrnet_w18_small", "cosine", 20.0, "nullbce", offset=-0.7)
    )
    images = tmp_path / "in"
    images.mkdir()
    Image.new("RGB", (48, 32), (10, 20, 30)).save(images / "good.png")
    (images / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "uniseg.cli",
        "predict",
        str(images),
        "--model",
        str(tmp_path / "m.pt"),
        "--out",
        str(out),
    ]
    proc = subprocess.run([*cmd, "--label-space", "kitti"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1 and "broken.png: cannot be decoded" in proc.stderr
    assert (out / "good.png").is_file() and (out / "good.overlay.png").is_file()
    written = {p.relative_to(tmp_path).parts[0] for p in tmp_path.rglob("*") if p.is_file()}
    assert written == {"m.pt", "in", "out"}
    proc = subprocess.run([*cmd, "--label-space", "atlantis"], capture_output=True, text=True, cwd=ROOT)
    assert (
        proc.returncode == 1
        and "unknown dataset 'atlantis'" in proc.stderr
        and "Traceback" not in proc.stderr
    )
    (tmp_path / "junk.pt").write_bytes(b"junk")
    cmd[cmd.index("--model") + 1] = str(tmp_path / "junk.pt")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1 and "not a uniseg model file" in proc.stderr


if __name__ == "__main__":  # regenerate reports/reliability.md
    (ROOT / "reports" / "reliability.md").write_text(render_table(), encoding="utf-8")


LOAD_SCRIPT = """
import resource, sys
from pathlib import Path
from uniseg.predict.predictor import predict_paths
inputs, model, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
files = sorted(inputs.iterdir())
predict_paths(files[:50], model, out / "a")
after_50 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
predict_paths(files, model, out / "b")
after_all = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(after_50, after_all)
"""


@pytest.mark.slow
def test_predict_memory_does_not_grow_with_the_number_of_images(tmp_path):
    import torch

    from uniseg.model.segmodel import ModelInfo, build_model, save_model_file

    torch.manual_seed(0)
    model = build_model("hrnet_w18_small", "cosine", 3)
    save_model_file(
        tmp_path / "m.pt",
        model,
        ModelInfo(["car", "road", "sky"], "hrnet_w18_small", "cosine", 20.0, "nullbce"),
    )
    images = tmp_path / "in"
    images.mkdir()
    for k in range(400):
        Image.new("RGB", (64, 32), (k % 255, 0, 0)).save(images / f"i{k:04d}.png")
    script = tmp_path / "load.py"
    script.write_text(LOAD_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(images), str(tmp_path / "m.pt"), str(tmp_path / "out")],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    after_50, after_all = map(int, proc.stdout.split()[-2:])
    assert after_all - after_50 < 60 * 1024, (
        f"peak RSS grew by {(after_all - after_50) / 1024:.0f} MiB over 350 more images"
    )
    assert "images/s" in proc.stdout
    assert len(list((tmp_path / "out" / "b").glob("*.overlay.png"))) == 400


@pytest.fixture(scope="module")
def stage_project(tmp_path_factory):
    """A tiny project for running the mine and evaluate stages as commands: shards of two training
    datasets and one unseen one, an (untrained) base model over their union, and a params file."""
    import yaml

    from uniseg.datasets.layout import read_spaces
    from uniseg.datasets.synthetic import generate_dataset
    from uniseg.model.segmodel import ModelInfo, build_model, save_model_file
    from uniseg.params import SyntheticParams
    from uniseg.taxonomy import union

    root = tmp_path_factory.mktemp("stages")
    synthetic = SyntheticParams(seed=0, height=64, width=128, train_images=4, val_images=2, test_images=2)
    for name in ("cityscapes", "mapillary", "kitti"):
        generate_dataset(name, root / "raw" / name, synthetic)
        write_shards(root / "raw" / name, root / "shards" / name, 64, progress=False)
    spaces = read_spaces(root / "shards", ["cityscapes", "mapillary"])
    classes = union(spaces.values())
    model = build_model("hrnet_w18_small", "cosine", len(classes))
    save_model_file(root / "base.pt", model, ModelInfo(classes, "hrnet_w18_small", "cosine", 20.0, "nullbce"))
    params = yaml.safe_load((ROOT / "params.tiny.yaml").read_text())
    params["train"]["datasets"] = ["cityscapes", "mapillary"]
    params["evaluate"].update(unseen=["kitti"], seen=["cityscapes"], cross=False)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def _stage_command(root: Path, stage: str, out: Path) -> list[str]:
    common = ["--params", str(root / "params.yaml"), "--shards", str(root / "shards"), "--device", "cpu"]
    if stage == "mine":
        return [*common, "--model", str(root / "base.pt"), "--out", str(out / "similarity.parquet")]
    return [
        *common,
        "--model",
        str(root / "base.pt"),
        "--metrics",
        str(out / "metrics.json"),
        "--eval-dir",
        str(out / "eval"),
    ]


# Runs a stage with os.replace held back: the first rename (a finished temporary about to become an
# output) announces itself and waits to be killed — the latest moment a kill can hit a writer.
KILL_AT_RENAME = """
import os, sys, time
from pathlib import Path
real = os.replace
def held(src, dst):
    Path(sys.argv[2]).write_text(str(dst))
    time.sleep(600)
os.replace = held
from stages.{stage} import app
app(sys.argv[3:], standalone_mode=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["mine", "evaluate"])
def test_kill_9_during_mining_or_evaluation_then_rerun_finishes(stage_project, tmp_path, stage):
    from uniseg.relations.mining import read_similarity

    marker = tmp_path / "renaming"
    out = tmp_path / "out"
    code = KILL_AT_RENAME.format(stage=stage)
    args = [sys.executable, "-c", code, stage, str(marker), *_stage_command(stage_project, stage, out)]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and not marker.exists() and proc.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), proc.stderr.read().decode() if proc.poll() is not None else "never renamed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = [p.name for p in out.iterdir() if not p.name.startswith(".")] if out.exists() else []
    assert finished == [], f"killed at its first rename, {stage} left {finished} in place"

    cmd = [sys.executable, "-m", f"stages.{stage}", *_stage_command(stage_project, stage, out)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    straight = tmp_path / "straight"
    cmd = [sys.executable, "-m", f"stages.{stage}", *_stage_command(stage_project, stage, straight)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    if stage == "mine":
        assert read_similarity(out / "similarity.parquet").equals(
            read_similarity(straight / "similarity.parquet")
        )
    else:
        assert (out / "metrics.json").read_text() == (straight / "metrics.json").read_text()
        assert sorted(p.name for p in (out / "eval").iterdir()) == ["base"]


def test_outputs_honour_the_umask(tmp_path):
    """Atomic writes create private temporaries; what lands has the mode a plain write would give."""
    import importlib

    import uniseg.fsio as fsio

    old = os.umask(0o022)
    try:
        importlib.reload(fsio)  # the umask is read at import
        fsio.write_text(tmp_path / "a.txt", "x")
        with fsio.atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("y")
        assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
        assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
    finally:
        os.umask(old)
        importlib.reload(fsio)
