"""Training checkpoints: written atomically by rank 0, restored only when they belong to the same run.

Under DDP only rank 0 reads the checkpoint and sends it to the other ranks: a run over several nodes
resumes without a file system that they share (each node's working directory may hold an old checkpoint,
or none; rank 0's decides).

A checkpoint holds the model, optimizer and scheduler states, the CPU RNG and the data position
(iteration, epoch, samples of this epoch consumed per process), so a killed run restarted with the same
command continues bit for bit. It also holds the run's fingerprint (engine.TrainJob.fingerprint: settings,
training code, data manifests, initial weights): a checkpoint of other settings or other code is ignored,
never resumed. Loaded with `weights_only=True`.

It also keeps the clock: the training seconds up to it over every process that trained the run
(`seconds`) and those of the processes before the one that wrote it (`carried`), so a run spread over
several sessions reports its whole training time (`carried_seconds`), not only its last part.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from uniseg.fsio import save_torch
from uniseg.model.segmodel import unwrap


def checkpoint_path(model_path: Path) -> Path:
    """Where the training of the model file `model_path` keeps its checkpoint: beside it."""
    return Path(model_path).with_suffix(".ckpt")


def save_checkpoint(
    path: Path,
    fingerprint: str,
    model: nn.Module,
    optimizer,
    scheduler,
    position,
    clock: tuple[float, float] = (0.0, 0.0),
) -> None:
    """position: (iteration, epoch, samples of the epoch consumed by this process); clock: (training
    seconds up to now over every process of the run, those carried in from the processes before)."""
    iteration, epoch, consumed = position
    state = {
        "fingerprint": fingerprint,
        "iteration": iteration,
        "epoch": epoch,
        "position": consumed,
        "seconds": float(clock[0]),
        "carried": float(clock[1]),
        "model": {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": torch.get_rng_state(),
    }
    save_torch(state, path)


def _load(path: Path, fingerprint: str, say) -> dict | None:
    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file is never trusted; start over
        say(f"ignoring unreadable checkpoint {path} ({type(exc).__name__}); starting from scratch")
        return None
    if ckpt.get("fingerprint") != fingerprint:
        say(f"ignoring checkpoint {path}: it belongs to other settings; starting from scratch")
        return None
    return ckpt


def _from_rank0(ckpt: dict | None) -> dict | None:
    """Rank 0's checkpoint (or None) on every rank: one broadcast (gloo or NCCL)."""
    import torch.distributed as dist

    box = [ckpt]
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    dist.broadcast_object_list(box, src=0, device=device)
    return box[0]


def restore(
    path: Path,
    fingerprint: str,
    model: nn.Module,
    optimizer,
    scheduler,
    iters: int,
    rank: int = 0,
    world: int = 1,
) -> tuple[int, int, int, float]:
    """Load the checkpoint at `path` (rank 0's, sent to every rank when `world` > 1) into model,
    optimizer, scheduler and the RNG when it exists and has `fingerprint`; returns the position to
    continue from and the training seconds already spent on it, (0, 0, 0, 0.0) for a fresh start (a
    checkpoint written before the clock was kept carries 0.0)."""

    def say(line: str) -> None:
        if rank == 0:
            print(line, flush=True)

    ckpt = _load(path, fingerprint, say) if rank == 0 else None
    if world > 1:
        ckpt = _from_rank0(ckpt)
    if ckpt is None:
        return 0, 0, 0, 0.0
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    torch.set_rng_state(ckpt["rng"])
    say(f"resuming from {path} at iteration {ckpt['iteration']}/{iters}")
    return ckpt["iteration"], ckpt["epoch"], ckpt["position"], float(ckpt.get("seconds", 0.0))


def carried_seconds(path: Path) -> float:
    """The training seconds of a finished run that its last process did not spend itself (earlier
    sessions, resumed from): the `carried` of its checkpoint at `path`, 0.0 when there is none or it
    cannot be read. Read right after that process, so the checkpoint is the run's own."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError):  # none, torn or foreign: nothing carried is known
        return 0.0
    return float(ckpt.get("carried", 0.0)) if isinstance(ckpt, dict) else 0.0
