"""The training loop shared by the train (base model) and retrain (class-relational BCE) stages.

Single process on CPU or one GPU, or DDP under torchrun (one process per GPU; SyncBatchNorm; the loss
normalised over all processes). Iteration-based with a poly learning rate, atomic checkpoints every N
iterations, exact resume (model, optimizer, scheduler, RNG, data position), dvclive logging.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from uniseg.data import TrainSet, make_train_loader
from uniseg.datasets.layout import read_spaces
from uniseg.errors import UserError
from uniseg.fsio import save_torch
from uniseg.losses import (
    build_loss,
    check_labels,
    dataset_masks,
    loss_spec,
    normalise_loss,
    relation_targets,
    sigmoid_prior,
)
from uniseg.models import ModelInfo, build_model, flush_denormals, read_model_file, save_model_file
from uniseg.params import ModelParams, Params, TrainParams
from uniseg.taxonomy import union


@dataclass
class TrainJob:
    """Everything one training run needs (`from_params`: built from params.yaml by a stage)."""

    loss: str
    model: ModelParams
    train: TrainParams  # the schedule (iters, lr, optimizer, ...) and the data settings
    seed: int
    spaces: dict[str, list[str]]  # training dataset -> label space (order = dataset ids)
    union: list[str]
    shard_dirs: list[Path]
    model_path: Path
    checkpoint_path: Path
    log_dir: Path
    relations: list[tuple[str, str, str]] = field(default_factory=list)  # crbce only
    init_model: Path | None = None  # start from these weights (retrain.init = base)

    @classmethod
    def from_params(
        cls,
        p: Params,
        shards: Path,
        out: Path,
        *,
        loss: str | None = None,
        train: TrainParams | None = None,
        relations: list[tuple[str, str, str]] | None = None,
        init_model: Path | None = None,
        log_dir: Path | None = None,
    ) -> TrainJob:
        """The job of params `p` on the shards of `p.train.datasets` under `shards`, writing the model file
        `out` (its checkpoint beside it, curves in `log_dir`, default reports/train/<out stem>). `loss`
        and `train` replace `p.loss` and `p.train` (the retrain stage: crbce with its own schedule)."""
        spaces = read_spaces(shards, p.train.datasets)
        return cls(
            loss=loss or p.loss,
            model=p.model,
            train=train or p.train,
            seed=p.seed,
            spaces=spaces,
            union=union(spaces.values()),
            shard_dirs=[shards / d for d in p.train.datasets],
            model_path=out,
            checkpoint_path=out.with_suffix(".ckpt"),
            log_dir=log_dir or Path("reports/train") / out.stem,
            relations=list(relations or []),
            init_model=init_model,
        )

    def fingerprint(self) -> str:
        """What must match for a checkpoint to be resumed (not paths, not the iteration budget's logging)."""
        keep = {
            "loss": self.loss,
            "model": self.model.model_dump(),
            "train": {
                k: v
                for k, v in self.train.model_dump().items()
                if k not in ("checkpoint_every", "log_every", "workers")
            },
            "seed": self.seed,
            "union": self.union,
            "relations": sorted(map(list, self.relations)),
            "init": str(self.init_model),
            "inputs": _input_digest(self),
        }
        return json.dumps(keep, sort_keys=True, default=str)


# The code that decides what training computes: a checkpoint written by other code is not resumed.
_TRAINING_CODE = ("engine.py", "losses.py", "models.py", "data.py", "transforms.py", "shards.py")


def _input_digest(job: TrainJob) -> str:
    """sha256 over the training code, the shard manifests and the initial weights."""
    import hashlib

    h = hashlib.sha256()
    here = Path(__file__).parent
    for name in _TRAINING_CODE:
        h.update((here / name).read_bytes())
    for d in job.shard_dirs:
        manifest = Path(d) / "manifest.parquet"
        h.update(manifest.read_bytes() if manifest.is_file() else b"-")
    if job.init_model is not None and Path(job.init_model).is_file():
        h.update(Path(job.init_model).read_bytes())
    return h.hexdigest()


def relaunch_with_torchrun(devices: int, module: str, argv: list[str]) -> None:
    """Re-execute `python -m module argv` under torchrun with `devices` processes, unless already in one.
    `dvc repro` stays the one command: the stage launches its own workers."""
    if devices <= 1 or "LOCAL_RANK" in os.environ:
        return
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    args = [torchrun, "--standalone", f"--nproc_per_node={devices}", "-m", module, *argv]
    print(f"launching {devices} processes: {' '.join(args[1:])}", flush=True)
    os.execv(torchrun, args)


def _setup_distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def _poly(iters: int, power: float):
    return lambda it: max(0.0, 1.0 - it / iters) ** power


def _make_optimizer(model: nn.Module, train: TrainParams):
    if train.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay
        )
    return torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)


def _load_checkpoint(job: TrainJob, rank: int):
    path = job.checkpoint_path
    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file is never trusted; start over
        if rank == 0:
            print(
                f"ignoring unreadable checkpoint {path} ({type(exc).__name__}); starting from scratch",
                flush=True,
            )
        return None
    if ckpt.get("fingerprint") != job.fingerprint():
        if rank == 0:
            print(
                f"ignoring checkpoint {path}: it belongs to other settings; starting from scratch", flush=True
            )
        return None
    return ckpt


def _save_checkpoint(job, model, optimizer, scheduler, iteration, epoch, position) -> None:
    state = {
        "fingerprint": job.fingerprint(),
        "iteration": iteration,
        "epoch": epoch,
        "position": position,
        "model": {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": torch.get_rng_state(),
    }
    save_torch(state, job.checkpoint_path)


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def _init_from(model: nn.Module, path: Path, union: list[str]) -> None:
    state, info = read_model_file(path)
    if info.classes != union:
        raise UserError(f"{path}: its classes differ from the training union; retrain the base model first")
    model.load_state_dict(state)


def train_model(job: TrainJob, progress: bool = True) -> dict:
    """Train, checkpoint, resume; write the model file. Returns {"iterations", "seconds", "final_loss"}."""
    from dvclive import Live
    from tqdm import tqdm

    rank, world, device = _setup_distributed()
    flush_denormals()
    torch.manual_seed(job.seed)
    cuda = device.type == "cuda"
    model = build_model(
        job.model.backbone, job.model.classifier, len(job.union), job.model.t, job.model.pretrained
    )
    if job.init_model is not None:
        _init_from(model, job.init_model, job.union)
    if world > 1 and cuda:  # SyncBatchNorm is GPU-only; on CPU (gloo) BN statistics stay per process
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    spec = loss_spec(job.loss)
    masks = dataset_masks(job.union, list(job.spaces.values())).to(device)
    targets = (
        relation_targets(job.union, job.spaces, job.relations).to(device) if spec.needs_relations else None
    )
    # A cosine head has no bias: sigmoid losses start from the prior 1/K (see sigmoid_prior).
    offset = sigmoid_prior(len(job.union)) if job.model.classifier == "cosine" and spec.sigmoid else 0.0
    loss_fn = build_loss(job.loss, masks, targets, offset)

    dataset = TrainSet(job.shard_dirs, job.union, tuple(job.train.crop), tuple(job.train.scale))
    if job.train.batch_size % world:
        raise UserError(f"train.batch_size {job.train.batch_size} is not divisible by train.devices {world}")
    per_rank = job.train.batch_size // world
    loader, sampler = make_train_loader(
        dataset, per_rank, job.train.workers, job.seed, job.train.weights, rank, world, pin_memory=cuda
    )
    iters = job.train.iters
    optimizer = _make_optimizer(model, job.train)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _poly(iters, job.train.poly_power))

    iteration, epoch, position = 0, 0, 0
    ckpt = _load_checkpoint(job, rank)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng"])
        iteration, epoch, position = ckpt["iteration"], ckpt["epoch"], ckpt["position"]
        if rank == 0:
            print(f"resuming from {job.checkpoint_path} at iteration {iteration}/{iters}", flush=True)

    net = model  # what the loop calls: the model, wrapped for DDP and compiled where asked
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    if job.train.compile and cuda:
        net = torch.compile(net)

    live = (
        Live(str(job.log_dir), resume=iteration > 0, save_dvc_exp=False, dvcyaml=None) if rank == 0 else None
    )
    bar = tqdm(
        total=iters,
        initial=iteration,
        desc=f"train {job.loss}",
        disable=rank != 0 or not progress or not sys.stderr.isatty(),
        mininterval=5,
    )
    bar_visible = progress and rank == 0 and sys.stderr.isatty()
    amp = job.train.amp and cuda
    start, seen, last_loss = time.perf_counter(), 0, math.nan
    window_loss, window_n, window_t = 0.0, 0, time.perf_counter()
    model.train()
    while iteration < iters:
        sampler.set_epoch(epoch, position)
        for images, labels, dataset_ids in loader:
            images = images.to(device, non_blocking=True)
            if cuda:
                images = images.contiguous(memory_format=torch.channels_last)
            labels = labels.to(device, non_blocking=True)
            dataset_ids = dataset_ids.to(device, non_blocking=True)
            check_labels(labels, len(job.union))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = net(images)
            total, count = loss_fn(logits, labels, dataset_ids)
            loss = normalise_loss(total, count)
            if not torch.isfinite(loss):
                raise UserError(
                    f"loss is {loss.item()} at iteration {iteration + 1}; lower the learning rate "
                    f"(currently {scheduler.get_last_lr()[0]:.3g}) or check the data"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            iteration += 1
            # Samples of this process consumed in the epoch (the sampler skips them on resume).
            position += per_rank
            seen += images.shape[0] * world
            last_loss = loss.item()
            window_loss, window_n = window_loss + last_loss, window_n + 1
            bar.update(1)
            if live is not None and (iteration % job.train.log_every == 0 or iteration == iters):
                now = time.perf_counter()
                live.log_metric("loss", window_loss / window_n)
                live.log_metric("lr", scheduler.get_last_lr()[0])
                live.log_metric("images_per_s", window_n * job.train.batch_size / max(now - window_t, 1e-9))
                live.step = iteration
                live.next_step()
                bar.set_postfix(loss=f"{window_loss / window_n:.4f}")
                if not bar_visible:  # a log line instead of the bar outside a terminal (CI, dvc exp queue)
                    rate = window_n / max(now - window_t, 1e-9)
                    eta = (iters - iteration) / max(rate, 1e-9)
                    print(
                        f"{job.loss} iteration {iteration}/{iters}  loss {window_loss / window_n:.4f}  "
                        f"lr {scheduler.get_last_lr()[0]:.3g}  {rate * job.train.batch_size:.1f} images/s  "
                        f"ETA {int(eta // 60)}m{int(eta % 60):02d}s",
                        flush=True,
                    )
                window_loss, window_n, window_t = 0.0, 0, now
            if rank == 0 and (iteration % job.train.checkpoint_every == 0 or iteration == iters):
                _save_checkpoint(job, model, optimizer, scheduler, iteration, epoch, position)
            if iteration >= iters:
                break
        else:
            epoch, position = epoch + 1, 0
    bar.close()
    seconds = time.perf_counter() - start
    if rank == 0:
        info = ModelInfo(
            classes=job.union,
            backbone=job.model.backbone,
            classifier=job.model.classifier,
            t=job.model.t,
            loss=job.loss,
            datasets=list(job.spaces),
            spaces=job.spaces,
            offset=offset,
        )
        save_model_file(job.model_path, model, info)
    if live is not None:
        live.end()
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return {"iterations": iteration, "seconds": seconds, "images": seen, "final_loss": last_loss}
