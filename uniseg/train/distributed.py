"""Processes for DDP: `dvc repro` stays the one command, the training stages launch their own workers
under torchrun (`train.devices > 1`), and each process finds its rank, the world size and its device.
Multi-node runs are started by the user (`torchrun --nnodes ...`, README) and join the same way."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import torch
import torch.distributed as dist


def relaunch_with_torchrun(devices: int, module: str, argv: list[str]) -> None:
    """Re-execute `python -m module argv` under torchrun with `devices` processes, unless already in one.
    `dvc repro` stays the one command: the stage launches its own workers."""
    if devices <= 1 or "LOCAL_RANK" in os.environ:
        return
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    args = [torchrun, "--standalone", f"--nproc_per_node={devices}", "-m", module, *argv]
    print(f"launching {devices} processes: {' '.join(args[1:])}", flush=True)
    os.execv(torchrun, args)


def setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device) of this process; joins the process group when there are several (NCCL
    on GPUs, gloo on the CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")
