"""The training loop shared by the train (base model) and retrain (class-relational BCE) stages.

Single process on CPU or one GPU, or DDP under torchrun (one process per GPU; SyncBatchNorm; the loss
normalised over all processes). Iteration-based with a poly learning rate, atomic checkpoints every N
iterations, exact resume (model, optimizer, scheduler, RNG, data position), dvclive logging.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from uniseg import identity
from uniseg.datasets.layout import read_spaces
from uniseg.errors import UserError
from uniseg.model.inputs import normalise_batch
from uniseg.model.losses import (
    build_loss,
    dataset_masks,
    loss_spec,
    normalise_loss,
    prior_offset,
    relation_targets,
)
from uniseg.model.segmodel import (
    ModelInfo,
    build_model,
    cpu_has_bf16,
    read_model_file,
    save_model_file,
    tune_cpu,
)
from uniseg.params import ModelParams, Params, TrainParams
from uniseg.taxonomy import union
from uniseg.train.checkpoints import checkpoint_path, restore, save_checkpoint
from uniseg.train.distributed import setup_distributed
from uniseg.train.loader import TrainSet, make_train_loader
from uniseg.train.trainlog import TrainLog, poly


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
    stage: str = "train"  # the stage that trains it (uniseg.identity.STAGE_CODE): "train" or "retrain"

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
        stage: str = "train",
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
            checkpoint_path=checkpoint_path(out),
            log_dir=log_dir or Path("reports/train") / out.stem,
            relations=list(relations or []),
            init_model=init_model,
            stage=stage,
        )

    def fingerprint(self) -> str:
        """What must match for a checkpoint to be resumed: what decides the model (`uniseg.identity`) —
        settings, code, data and initial weights by content; not paths, not how the run is logged."""
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
            # By content: the code (uniseg.identity), the shards' manifests, the initial weights.
            "code": identity.code_digest(identity.training_code(self.stage, self.model.backbone)),
            "shards": [identity.file_digest(Path(d) / "manifest.parquet") for d in self.shard_dirs],
            "pretrained": identity.file_digest(self.model.pretrained),
            "init_weights": identity.file_digest(self.init_model),
        }
        return json.dumps(keep, sort_keys=True, default=str)

    def model_info(self, offset: float) -> ModelInfo:
        """What the model file records besides the weights."""
        return ModelInfo(
            classes=self.union,
            backbone=self.model.backbone,
            classifier=self.model.classifier,
            t=self.model.t,
            loss=self.loss,
            datasets=list(self.spaces),
            spaces=self.spaces,
            offset=offset,
        )


def _make_optimizer(model: nn.Module, train: TrainParams, device: torch.device):
    """SGD or AdamW; on CUDA the fused implementation (one kernel for all parameters)."""
    fused = {"fused": True} if device.type == "cuda" else {}
    if train.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay, **fused
        )
    return torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay, **fused)


def _init_from(model: nn.Module, path: Path, union: list[str]) -> None:
    state, info = read_model_file(path)
    if info.classes != union:
        raise UserError(f"{path}: its classes differ from the training union; retrain the base model first")
    model.load_state_dict(state)


def _model_for(job: TrainJob, world: int, device: torch.device) -> nn.Module:
    """The model to train, on `device`: from the pretrained backbone or `job.init_model`."""
    model = build_model(
        job.model.backbone, job.model.classifier, len(job.union), job.model.t, job.model.pretrained
    )
    if job.init_model is not None:
        _init_from(model, job.init_model, job.union)
    if world > 1 and device.type == "cuda":  # SyncBatchNorm is GPU-only; on CPU (gloo) BN stays per process
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if _channels_last(job.train, device) else model


def precision(train: TrainParams, device: torch.device) -> str:
    """What the training step computes in: "bf16" (autocast) on CUDA with `train.amp`, and on a CPU with
    `train.amp_cpu` where it has bf16 units (`cpu_has_bf16`); "float32" otherwise."""
    if device.type == "cuda":
        return "bf16" if train.amp else "float32"
    return "bf16" if train.amp_cpu and cpu_has_bf16() else "float32"


def _channels_last(train: TrainParams, device: torch.device) -> bool:
    """channels_last: on CUDA, and on a CPU that trains in bf16 (oneDNN's bf16 convolutions want it)."""
    return device.type == "cuda" or precision(train, device) == "bf16"


def _loss_for(job: TrainJob, device: torch.device):
    """(loss function, the sigmoid prior offset it applies: stored in the model file for inference)."""
    spec = loss_spec(job.loss)
    masks = dataset_masks(job.union, list(job.spaces.values())).to(device)
    targets = (
        relation_targets(job.union, job.spaces, job.relations).to(device) if spec.needs_relations else None
    )
    offset = prior_offset(job.model.classifier, job.loss, len(job.union))
    return build_loss(job.loss, masks, targets, offset), offset


def _loader_for(job: TrainJob, rank: int, world: int, device: torch.device):
    """(loader, its sampler, samples per process and step)."""
    t = job.train
    dataset = TrainSet(job.shard_dirs, job.union, tuple(t.crop), tuple(t.scale), resize=t.resize)
    if job.train.batch_size % world:
        raise UserError(f"train.batch_size {job.train.batch_size} is not divisible by train.devices {world}")
    per_rank = job.train.batch_size // world
    loader, sampler = make_train_loader(
        dataset,
        per_rank,
        job.train.workers,
        job.seed,
        job.train.weights,
        rank,
        world,
        pin_memory=device.type == "cuda",
    )
    return loader, sampler, per_rank


def wrap(model: nn.Module, world: int, device: torch.device, compile: bool) -> nn.Module:
    """What the loop calls: the model wrapped for DDP, and compiled when asked (CUDA only)."""
    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    return torch.compile(net) if compile and device.type == "cuda" else net


def _log_for(job: TrainJob, start: int, progress: bool) -> TrainLog:
    """Rank 0's progress: a bar in a terminal (when `progress`), else log lines; curves to dvclive."""
    t = job.train
    return TrainLog(
        job.loss, t.iters, t.batch_size, t.log_every, start=start, live_dir=job.log_dir, bar=progress
    )


def train_step(
    net, loss_fn, optimizer, scheduler, batch, device: torch.device, amp: bool, channels_last: bool = False
):
    """One optimisation step on (images uint8, labels uint8, dataset ids); returns the loss as a 0-d
    tensor on the device. Nothing here waits for the device: the host reads the loss only where the loop
    checks it (`_check_finite`)."""
    images, labels, dataset_ids = (t.to(device, non_blocking=True) for t in batch)
    images = normalise_batch(images)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        logits = net(images)
    loss = normalise_loss(*loss_fn(logits, labels.long(), dataset_ids))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    return loss.detach()


def _check_finite(window: torch.Tensor, first: int, last: int, lr: float) -> float:
    """The summed loss of iterations first..last (float64 on the device), read by the host: once per
    logging window and at each checkpoint, so a non-finite loss stops the run before it is logged or
    saved."""
    total = float(window)
    if not math.isfinite(total):
        where = f"iteration {last}" if first == last else f"iterations {first}-{last}"
        raise UserError(
            f"loss is {total} at {where}; lower the learning rate (currently {lr:.3g}) or check the data"
        )
    return total


def run_summary(result: dict) -> str:
    """A finished run in words, as the stages print it (train_model's result)."""
    before = f" (+{result['carried_seconds']:.0f}s before resuming)" if result["carried_seconds"] else ""
    rate = result["images"] / max(result["seconds"], 1e-9)
    return (
        f"{result['iterations']} iterations in {result['seconds']:.0f}s{before} ({rate:.1f} images/s), "
        f"final loss {result['final_loss']:.4f}"
    )


def train_model(job: TrainJob, progress: bool = True) -> dict:
    """Train, checkpoint, resume; write the model file. Returns {"iterations", "seconds" (this process's),
    "carried_seconds" (those of earlier processes, resumed from), "images", "final_loss" (the mean over
    the last logging window), "precision"}."""
    rank, world, device = setup_distributed()
    tune_cpu()
    torch.manual_seed(job.seed)
    model = _model_for(job, world, device)
    loss_fn, offset = _loss_for(job, device)
    loader, sampler, per_rank = _loader_for(job, rank, world, device)
    iters, every, log_every = job.train.iters, job.train.checkpoint_every, job.train.log_every
    optimizer = _make_optimizer(model, job.train, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, poly(iters, job.train.poly_power))
    state, fingerprint = (model, optimizer, scheduler), job.fingerprint()
    iteration, epoch, position, carried = restore(
        job.checkpoint_path, fingerprint, *state, iters, rank, world
    )
    net = wrap(model, world, device, job.train.compile)
    log = _log_for(job, iteration, progress) if rank == 0 else None
    amp, layout = precision(job.train, device) == "bf16", _channels_last(job.train, device)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # static crops: pick the fastest kernels once
    start, seen, last_loss = time.perf_counter(), 0, math.nan
    # The losses since the last logging window, summed on the device (float64: the host's sum of them).
    window, first = torch.zeros((), dtype=torch.float64, device=device), iteration + 1
    model.train()
    while iteration < iters:
        sampler.set_epoch(epoch, position)
        for batch in loader:
            lr = scheduler.get_last_lr()[0]
            window += train_step(net, loss_fn, optimizer, scheduler, batch, device, amp, layout)
            # Samples of this process consumed in the epoch (the sampler skips them on resume).
            iteration, position, seen = iteration + 1, position + per_rank, seen + len(batch[0]) * world
            logging = iteration % log_every == 0 or iteration == iters
            saving = iteration % every == 0 or iteration == iters
            if logging or saving:  # the only places where the host waits for the device
                total = _check_finite(window, first, iteration, lr)
            if logging:
                count, last_loss = iteration - first + 1, total / (iteration - first + 1)
                if log is not None:
                    log.update(iteration, total, scheduler.get_last_lr()[0], count)
                window, first = torch.zeros_like(window), iteration + 1
            if rank == 0 and saving:
                clock = (carried + time.perf_counter() - start, carried)
                save_checkpoint(job.checkpoint_path, fingerprint, *state, (iteration, epoch, position), clock)
            if iteration >= iters:
                break
        else:
            epoch, position = epoch + 1, 0
    seconds = time.perf_counter() - start
    if rank == 0 and seen == 0 and carried:  # resumed finished: all of its training was carried in
        save_checkpoint(
            job.checkpoint_path, fingerprint, *state, (iteration, epoch, position), (carried, carried)
        )
    if log is not None:
        log.close()
    if rank == 0:
        save_model_file(job.model_path, model, job.model_info(offset))
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return {
        "iterations": iteration,
        "seconds": seconds,
        "carried_seconds": carried,
        "images": seen,
        "final_loss": last_loss,
        "precision": precision(job.train, device),
    }
