"""Training: a resumed run equals an uninterrupted one (one process, and two nodes without a shared file
system); NaN stops with the iteration; foreign checkpoints are not resumed; the model file is
self-contained."""

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from uniseg.datasets.layout import read_spaces
from uniseg.datasets.synthetic import generate_dataset
from uniseg.errors import UserError
from uniseg.model.segmodel import load_model_file
from uniseg.params import ModelParams, Params, SyntheticParams, TrainParams
from uniseg.shards.packing import write_shards
from uniseg.taxonomy import union
from uniseg.train.checkpoints import carried_seconds
from uniseg.train.engine import TrainJob, train_model

DATASETS = ["cityscapes", "mapillary"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine")
    params = SyntheticParams(seed=0, height=64, width=64, train_images=4, val_images=1)
    for d in DATASETS:
        generate_dataset(d, root / "raw" / d, params)
        write_shards(root / "raw" / d, root / "shards" / d, 64, progress=False)
    return root / "shards"


def _job(shards: Path, out: Path, iters=4, **train) -> TrainJob:
    settings = dict(
        datasets=DATASETS,
        iters=iters,
        batch_size=2,
        crop=[64, 64],
        workers=0,
        checkpoint_every=2,
        log_every=1,
    )
    settings.update(train)
    p = Params(
        loss="nullbce",
        model=ModelParams(backbone="hrnet_w18_small", classifier="cosine"),
        train=TrainParams(**settings),
        seed=0,
    )
    return TrainJob.from_params(p, shards, out / "m.pt", log_dir=out / "log")


@pytest.fixture
def one_thread():
    """Bit-exact comparisons need the same float reduction order in every run: one intra-op thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _weights(path):
    model, _ = load_model_file(path)
    return model.state_dict()


def test_a_resumed_run_gives_the_same_model_as_an_uninterrupted_one(
    shards, tmp_path, monkeypatch, one_thread
):
    straight = _job(shards, tmp_path / "a")
    train_model(straight, progress=False)

    interrupted = _job(shards, tmp_path / "b")
    calls = {"n": 0}
    real_step = torch.optim.SGD.step

    def crash_after_three(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed during iteration 3, after the checkpoint at 2
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        train_model(interrupted, progress=False)
    monkeypatch.setattr(torch.optim.SGD, "step", real_step)
    assert not (tmp_path / "b" / "m.pt").exists()
    first = torch.load(interrupted.checkpoint_path, weights_only=True)["seconds"]  # the killed process's
    result = train_model(interrupted, progress=False)
    assert result["iterations"] == 4
    a, b = _weights(tmp_path / "a" / "m.pt"), _weights(tmp_path / "b" / "m.pt")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # The clock: the resumed run carried the killed process's training seconds, and says so.
    assert first > 0 and result["carried_seconds"] == first == carried_seconds(interrupted.checkpoint_path)
    assert carried_seconds(straight.checkpoint_path) == 0.0, "an uninterrupted run carried nothing"
    total = torch.load(interrupted.checkpoint_path, weights_only=True)["seconds"]
    again = train_model(interrupted, progress=False)  # finished: nothing trained, everything carried
    assert again["images"] == 0 and again["carried_seconds"] == total
    assert carried_seconds(interrupted.checkpoint_path) == total
    assert carried_seconds(tmp_path / "none.ckpt") == 0.0


def test_a_checkpoint_of_other_settings_is_not_resumed(shards, tmp_path, capsys):
    train_model(_job(shards, tmp_path, iters=2), progress=False)
    other = _job(shards, tmp_path, iters=2)
    other = replace(other, train=other.train.model_copy(update={"lr": 0.02}))
    train_model(other, progress=False)
    assert "belongs to other settings" in capsys.readouterr().out


def test_nan_loss_stops_with_the_iteration_named(shards, tmp_path):
    job = _job(shards, tmp_path, iters=3)
    job = replace(job, model=ModelParams(backbone="hrnet_w18_small", classifier="linear"))
    job = replace(job, train=job.train.model_copy(update={"lr": 1.0, "momentum": 0.0}))
    import uniseg.train.engine as engine

    real = engine.normalise_loss
    engine.normalise_loss = lambda total, count: real(total, count) * float("nan")
    try:
        with pytest.raises(UserError, match="loss is nan at iteration 1"):
            train_model(job, progress=False)
    finally:
        engine.normalise_loss = real


def test_a_nan_inside_a_logging_window_stops_the_run_before_anything_is_saved(shards, tmp_path, monkeypatch):
    """The host reads the loss once per logging window (no synchronisation in the other steps): a NaN at
    iteration 2 is caught at the window's end, before the checkpoint of iteration 3 is written."""
    import uniseg.train.engine as engine

    job = _job(shards, tmp_path, iters=6, log_every=3, checkpoint_every=3)
    real, calls = engine.normalise_loss, {"n": 0}

    def nan_at_two(total, count):
        calls["n"] += 1
        return real(total, count) * (float("nan") if calls["n"] == 2 else 1.0)

    monkeypatch.setattr(engine, "normalise_loss", nan_at_two)
    with pytest.raises(UserError, match="loss is nan at iterations 1-3"):
        train_model(job, progress=False)
    assert calls["n"] == 3 and not job.checkpoint_path.exists() and not job.model_path.exists()


def test_the_model_file_holds_what_inference_needs_and_the_log_line(shards, tmp_path, capsys):
    train_model(_job(shards, tmp_path, iters=2), progress=False)
    model, info = load_model_file(tmp_path / "m.pt")
    assert info.classes == union(read_spaces(shards, DATASETS).values())
    assert info.offset < 0 and info.datasets == DATASETS and info.loss == "nullbce"
    assert (tmp_path / "log").is_dir()


DDP_SCRIPT = """
import sys
from pathlib import Path
import torch
torch.set_num_threads(1)  # the same reduction order as the uninterrupted run in the test process
sys.path.insert(0, {tests!r})
from test_engine import _job
from uniseg.train.engine import train_model
train_model(_job(Path({shards!r}), Path({out!r}), iters=2, devices=2, batch_size=4), progress=False)
"""

GRADIENT_SCRIPT = """
import sys
import torch
import torch.distributed as dist
sys.path.insert(0, {tests!r})
from test_engine import _toy_problem
from uniseg.model.losses import build_loss, normalise_loss
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
model, masks, images, labels, ids = _toy_problem()
ddp = torch.nn.parallel.DistributedDataParallel(model)
part = slice(rank * 2, rank * 2 + 2)
normalise_loss(*build_loss("nullbce", masks)(ddp(images[part]), labels[part], ids[part])).backward()
if rank == 0:
    torch.save({{"grad": model.weight.grad}}, {out!r})
"""


def _toy_problem():
    """A 1x1-conv "model" and a batch of 4 from two datasets, with unequal valid-pixel counts."""
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 4, 1)
    masks = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]], dtype=torch.bool)
    images = torch.randn(4, 3, 5, 6)
    labels = torch.randint(1, 3, (4, 5, 6))
    labels[0, 0] = 255
    labels[3, :3] = 255
    return model, masks, images, labels, torch.tensor([0, 1, 0, 1])


def _torchrun(script: Path, text: str) -> None:
    """Run `text` as a script under torchrun with 2 CPU processes (gloo)."""

    script.write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


@pytest.mark.slow
def test_ddp_loss_normalisation_gives_the_single_process_gradient(tmp_path):
    """2 processes (gloo) with half a batch each give exactly the gradient of 1 process with the
    whole batch, also when the processes see different numbers of valid pixels."""

    from uniseg.model.losses import build_loss, normalise_loss

    _torchrun(
        tmp_path / "grad.py",
        GRADIENT_SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path / "ddp.pt")),
    )
    model, masks, images, labels, ids = _toy_problem()
    normalise_loss(*build_loss("nullbce", masks)(model(images), labels, ids)).backward()
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    assert torch.allclose(ddp["grad"], model.weight.grad, atol=1e-6)


@pytest.mark.slow
def test_training_with_two_cpu_processes_runs_end_to_end(shards, tmp_path):

    script = DDP_SCRIPT.format(tests=str(Path(__file__).parent), shards=str(shards), out=str(tmp_path))
    _torchrun(tmp_path / "ddp.py", script)
    weights = _weights(tmp_path / "m.pt")
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


def test_a_few_iterations_reduce_the_loss(shards, tmp_path):
    import pandas as pd

    train_model(
        _job(shards, tmp_path, iters=30, batch_size=4, log_every=5, checkpoint_every=30), progress=False
    )
    curve = pd.read_csv(tmp_path / "log" / "plots" / "metrics" / "loss.tsv", sep="\t")["loss"].tolist()
    assert len(curve) == 6  # means over windows of 5 iterations
    assert curve[-1] < 0.7 * curve[0], curve


KILL_SCRIPT = """
import sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)  # the same reduction order as the uninterrupted run in the test process
sys.path.insert(0, {tests!r})
from test_engine import _job
from uniseg.train.engine import train_model
real_step = torch.optim.SGD.step
def slow_step(self, *args, **kwargs):
    time.sleep(0.4)  # slow enough to be killed mid-run
    return real_step(self, *args, **kwargs)
torch.optim.SGD.step = slow_step
train_model(_job(Path({shards!r}), Path({out!r}), iters=8), progress=False)
"""


@pytest.mark.slow
def test_kill_9_mid_training_then_rerun_gives_the_uninterrupted_weights(shards, tmp_path, one_thread):

    train_model(_job(shards, tmp_path / "straight", iters=8), progress=False)
    script = tmp_path / "kill.py"
    script.write_text(
        KILL_SCRIPT.format(tests=str(Path(__file__).parent), shards=str(shards), out=str(tmp_path / "killed"))
    )
    proc = subprocess.Popen([sys.executable, str(script)])
    ckpt = tmp_path / "killed" / "m.ckpt"
    deadline = time.time() + 300
    while time.time() < deadline and not ckpt.exists() and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not (tmp_path / "killed" / "m.pt").exists(), "killed between checkpoints"
    train_model(_job(shards, tmp_path / "killed", iters=8), progress=False)
    a, b = _weights(tmp_path / "straight" / "m.pt"), _weights(tmp_path / "killed" / "m.pt")
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --- several nodes: two CPU processes (gloo), each in its own working directory, stand for two nodes
# without a shared file system; only rank 0 writes checkpoints and logs, so after a crash only node 0
# holds a checkpoint, and rank 0 sends it to the others on resume.

NODE_SCRIPT = """
import sys, time
from dataclasses import replace
from pathlib import Path
import torch
torch.set_num_threads(1)  # the same reduction order in every run
sys.path.insert(0, {tests!r})
from test_engine import _job
from uniseg.train.engine import train_model
if {slow}:
    real_step = torch.optim.SGD.step
    def slow_step(self, *args, **kwargs):
        time.sleep(0.3)  # slow enough to be killed between checkpoints
        return real_step(self, *args, **kwargs)
    torch.optim.SGD.step = slow_step
job = _job(Path({shards!r}), Path("run"), iters=8, devices=2, batch_size=4)
backbone = {backbone!r}  # the repository's, by absolute path: a node's working directory has none
job = replace(job, model=job.model.model_copy(update={{"pretrained": backbone}}))
train_model(job, progress=False)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nodes(root: Path, shards: Path, slow: bool) -> list[subprocess.Popen]:
    """Start rank 0 and rank 1, each as the only process of its node, in root/node0 and root/node1."""
    port, procs = _free_port(), []
    repo = Path(__file__).resolve().parents[1]
    script = NODE_SCRIPT.format(
        tests=str(Path(__file__).parent),
        shards=str(shards),
        slow=slow,
        backbone=str(repo / "models" / "pretrained.pt"),
    )
    for rank in (0, 1):
        node = root / f"node{rank}"
        node.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2")
        env |= {"RANK": str(rank), "LOCAL_RANK": "0", "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-c", script], cwd=node, env=env))
    return procs


def _wait(procs: list[subprocess.Popen], timeout: float = 300) -> list[int]:
    deadline = time.time() + timeout
    for p in procs:
        try:
            p.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("a node hung: the ranks did not resume from the same checkpoint")
    return [p.returncode for p in procs]


@pytest.mark.slow
def test_killing_a_node_mid_run_then_restarting_both_gives_the_uninterrupted_weights(shards, tmp_path):
    assert _wait(_nodes(tmp_path / "straight", shards, slow=False)) == [0, 0]

    procs = _nodes(tmp_path / "killed", shards, slow=True)
    ckpt = tmp_path / "killed" / "node0" / "run" / "m.ckpt"
    deadline = time.time() + 300
    while time.time() < deadline and not ckpt.exists() and procs[0].poll() is None:
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGKILL)  # node 1 dies; node 0 fails or waits on it: stop it too
    time.sleep(2)
    procs[0].send_signal(signal.SIGKILL)
    _wait(procs)
    assert ckpt.exists() and not (tmp_path / "killed" / "node0" / "run" / "m.pt").exists(), "mid-run"
    assert not (tmp_path / "killed" / "node1" / "run" / "m.ckpt").exists(), "only rank 0 checkpoints"

    assert _wait(_nodes(tmp_path / "killed", shards, slow=False)) == [0, 0]
    a = _weights(tmp_path / "straight" / "node0" / "run" / "m.pt")
    b = _weights(tmp_path / "killed" / "node0" / "run" / "m.pt")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    for run in ("straight", "killed"):
        assert (tmp_path / run / "node0" / "run" / "log").is_dir(), "rank 0 logs"
        assert not (tmp_path / run / "node1" / "run").exists(), "rank 1 writes nothing"


def _backbone_file(path: Path, seed: int) -> Path:
    """A pretrain-stage backbone file of hrnet_w18_small with weights drawn from `seed`."""
    from uniseg.model.backbones import create_encoder, save_backbone_file

    torch.manual_seed(seed)
    save_backbone_file(path, create_encoder("hrnet_w18_small", "none"), "hrnet_w18_small", {"seed": seed})
    return path


def _pretrained_job(shards: Path, out: Path, pretrained: Path) -> TrainJob:
    job = _job(shards, out, iters=2)
    return replace(job, model=job.model.model_copy(update={"pretrained": str(pretrained)}))


def test_a_finished_checkpoint_is_not_resumed_after_the_pretrained_weights_changed(
    shards, tmp_path, one_thread
):
    """The stale-model bug: the finished checkpoint of a run must not stand in for a run whose initial
    weights differ by content under the same path (the pretrain stage reran)."""
    weights = _backbone_file(tmp_path / "pretrained.pt", seed=1)
    train_model(_pretrained_job(shards, tmp_path / "run", weights), progress=False)
    first = _weights(tmp_path / "run" / "m.pt")

    _backbone_file(weights, seed=2)  # new content, same path
    train_model(_pretrained_job(shards, tmp_path / "run", weights), progress=False)
    train_model(_pretrained_job(shards, tmp_path / "fresh", weights), progress=False)
    again, fresh = _weights(tmp_path / "run" / "m.pt"), _weights(tmp_path / "fresh" / "m.pt")
    assert any(not torch.equal(first[k], again[k]) for k in first), "the old weights were written again"
    for key in fresh:
        assert torch.equal(again[key], fresh[key]), key


def test_a_finished_checkpoint_is_not_resumed_after_the_schedule_code_changed(
    shards, tmp_path, monkeypatch, capsys
):
    """The learning-rate schedule (train/trainlog.py) decides the model: a checkpoint written before it
    changed is ignored (checked on a copy of the code, with one byte of the schedule's module changed)."""
    from uniseg import identity

    job = _job(shards, tmp_path, iters=2)
    train_model(job, progress=False)
    copy = tmp_path / "code"
    for f in identity.code_files(identity.training_code("train", job.model.backbone)):
        target = copy / f.relative_to(identity.ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.read_bytes())
    monkeypatch.setattr(identity, "ROOT", copy)
    capsys.readouterr()
    train_model(job, progress=False)
    assert "resuming" in capsys.readouterr().out  # the same code: the finished run is resumed
    schedule = copy / "uniseg" / "train" / "trainlog.py"
    schedule.write_bytes(schedule.read_bytes() + b"\n")
    train_model(job, progress=False)
    out = capsys.readouterr().out
    assert "belongs to other settings" in out and "resuming" not in out
