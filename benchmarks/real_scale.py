"""`make bench` at the paper's resolution: the input pipeline on 1080p shards against one reading the
source PNGs, peak memory of mining and evaluation for one 1080p image, and the training stage's
overhead over a bare loop. Each figure is a ratio measured side by side, or a peak measured in a fresh
process.

- loader.images_per_s_per_worker: training samples per second from one worker in the paper's profile
  (params.paper.yaml: shard.image_format jpeg, train.resize window): a 1080p shard sample decoded,
  randomly scaled (x0.5-2), cropped to 713, flipped, handed over as uint8. loader.variants: the same for
  every (image format, resize) pair, so each choice's share is measured. loader.speedup_vs_reference:
  over a torchvision-references style dataset that opens the Cityscapes-layout 2048x1024 source PNG
  with PIL, converts the labelIds, resizes the whole image, crops, flips and normalises in the worker
  (goal >= 3). loader.shard_kib_per_image: what each image format costs on disk.
  loader.workers_per_gpu: workers one GPU needs at the training speed that reports/bench_gpu.json
  measured for the paper's setting (when that file holds it).
- mine.peak_mib_1080p, evaluate.peak_mib_1080p: peak resident memory (MiB) of a process that mines or
  scores one 1920x1080 image at batch 1 with hrnet_w18_small and the 70-class union (goal <= 2048 each).
- train.overhead_vs_bare_loop: the training stage's time per step (engine.train_model: its loader,
  logging every log_every and a checkpoint every checkpoint_every steps, as params.yaml sets them) over
  a bare forward/loss/backward/step loop fed by the same loader; both warm (the first steps, where the
  workers start and the first batch is built, are left out of both), interleaved rounds, medians
  (goal <= 1.05).
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CROP, SCALE = (713, 713), (0.5, 2.0)


def _cityscapes_sources(root: Path, n: int, split: str = "val") -> None:
    """n Cityscapes-layout samples of `split`, 2048x1024, images with smooth structure (PNG sizes like real
    ones rather than noise) and labelIds."""
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:1024, 0:2048]
    for k in range(n):
        base = (np.sin(x / (40 + k)) + np.cos(y / (30 + 2 * k))) * 60 + 128
        img = np.stack([base, base[::-1], base[:, ::-1]], -1) + rng.normal(0, 4, (1024, 2048, 3))
        label = np.where(y < 400, 23, np.where(y > 700, 7, 11)).astype(np.uint8)  # sky, road, building
        label[(x // 128 + y // 128 + k) % 7 == 0] = 26  # car blocks
        image_dir = root / "leftImg8bit" / split / "city"
        label_dir = root / "gtFine" / split / "city"
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
            image_dir / f"city_{k:06d}_000019_leftImg8bit.png"
        )
        Image.fromarray(label).save(label_dir / f"city_{k:06d}_000019_gtFine_labelIds.png")


def cityscapes_raw(tmp: Path, n: int) -> Path:
    """n generated Cityscapes-layout training samples (and one val sample: ingestion checks the whole
    official layout), indexed under tmp/raw; returns tmp/raw. The sources stay in tmp/cityscapes."""
    from uniseg.datasets.real import ingest

    src = tmp / "cityscapes"
    _cityscapes_sources(src, n, "train")
    _cityscapes_sources(src, 1, "val")
    (src / "splits").mkdir(exist_ok=True)
    (src / "splits" / "val.txt").write_text("city/city_000000_000019\n")
    ingest("cityscapes", src, tmp / "raw")
    return tmp / "raw"


def default_corpus(tmp: Path, images: int = 64):
    """The default profile (params.yaml) with `images` training images per dataset rendered and sharded
    under tmp/shards (kept when already there), on random initial weights (timing needs no pretrained
    file); returns its params."""
    from uniseg.datasets.synthetic import generate_dataset
    from uniseg.params import load_params
    from uniseg.shards.packing import write_shards

    p = load_params(ROOT / "params.yaml")
    synthetic = p.synthetic.model_copy(update={"train_images": images, "val_images": 1})
    for name in p.train.datasets:
        if not (tmp / "shards" / name).is_dir():
            generate_dataset(name, tmp / "raw" / name, synthetic)
            write_shards(tmp / "raw" / name, tmp / "shards" / name, p.shard.short_side, progress=False)
    return p.model_copy(update={"model": p.model.model_copy(update={"pretrained": "none"})})


def engine_seconds(p, shards: Path, out: Path, iters: int) -> float:
    """`engine.train_model`'s loop time for a fresh run of `iters` iterations of params `p` (never a
    resumed one) on the shards under `shards`, writing under `out/engine-<iters>`."""
    from uniseg.train.engine import TrainJob, train_model

    run = out / f"engine-{iters}"
    job = TrainJob.from_params(
        p.model_copy(update={"train": p.train.model_copy(update={"iters": iters})}),
        shards,
        run / "m.pt",
        log_dir=run / "log",
    )
    job.checkpoint_path.unlink(missing_ok=True)
    return train_model(job, progress=False)["seconds"]


class ReferenceDataset(torch.utils.data.Dataset):
    """The torchvision segmentation references' way: per sample, open the source PNGs with PIL, convert
    the labels, then RandomResize (of the whole image), RandomCrop, flip, ToDtype and Normalize."""

    def __init__(self, root: Path, union: list[str]):
        from torchvision.transforms import v2

        from uniseg import taxonomy
        from uniseg.model.backbones import MEAN, STD
        from uniseg.train.transforms import train_transform

        self.images = sorted((root / "leftImg8bit" / "train").rglob("*_leftImg8bit.png"))
        self.lut = taxonomy.raw_lut("cityscapes")
        space = taxonomy.label_space("cityscapes")
        self.to_union = taxonomy.space_to_union_lut(space, union)
        # The same scales as the shards' pipeline: shorter side 1080 x U(0.5, 2).
        geometric = train_transform(1080, CROP, SCALE, "image")
        normalise = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]
        self.transform = v2.Compose([geometric, *normalise])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        from uniseg.train.transforms import to_tv

        path = self.images[i]
        label_path = Path(
            str(path).replace("leftImg8bit", "gtFine", 1).replace("_leftImg8bit.png", "_gtFine_labelIds.png")
        )
        image = np.asarray(Image.open(path).convert("RGB"))
        values = self.lut[np.asarray(Image.open(label_path))]
        label = np.where(values < 0, 255, values).astype(np.uint8)
        img, mask = self.transform(*to_tv(image, label))
        return img, torch.from_numpy(self.to_union[mask.numpy()]), 0


def _per_sample(data, rounds: int) -> float:
    """Median over rounds of the seconds per sample, reading every sample once per round in one process
    (what one loader worker does)."""
    times = []
    for r in range(rounds):
        torch.manual_seed(r)
        start = time.perf_counter()
        for i in range(len(data)):
            data[i]
        times.append((time.perf_counter() - start) / len(data))
    return statistics.median(times)


def _gpu_training_rate() -> float | None:
    """images/s of the paper's setting on one GPU, as reports/bench_gpu.json measured it (the engine's
    figure when there is one, else the bare loop's)."""
    path = ROOT / "reports" / "bench_gpu.json"
    if not path.is_file():
        return None
    gpu = json.loads(path.read_text(encoding="utf-8"))
    for key in ("engine.w48_713_b8.bf16", "train.w48_713_b8.bf16"):
        if isinstance(gpu.get(key), dict) and "images_per_s" in gpu[key]:
            return float(gpu[key]["images_per_s"])
    return None


def bench_loader_1080p(tmp: Path, n: int = 12, rounds: int = 3) -> dict:
    from uniseg.shards.packing import write_shards
    from uniseg.taxonomy import label_space
    from uniseg.train.loader import TrainSet

    raw, src = cityscapes_raw(tmp, n), tmp / "cityscapes"
    union = label_space("cityscapes")
    out, per = {}, {}
    for fmt in ("source", "jpeg"):
        shards = tmp / f"shards-{fmt}"
        write_shards(raw, shards, 1080, 64, 1, progress=False, image_format=fmt)
        size = sum(f.stat().st_size for f in shards.glob("train-*.arrow"))
        out[f"loader.shard_kib_per_image.{'png' if fmt == 'source' else 'jpeg'}"] = round(size / n / 1024)
        for resize in ("image", "window"):
            data = TrainSet([shards], union, CROP, SCALE, resize=resize)
            per[("png" if fmt == "source" else "jpeg", resize)] = _per_sample(data, rounds)
    reference = _per_sample(ReferenceDataset(src, union), rounds)
    best = per[("jpeg", "window")]
    out |= {
        "loader.images_per_s_per_worker": round(1 / best, 2),
        "loader.reference_images_per_s_per_worker": round(1 / reference, 2),
        "loader.speedup_vs_reference": round(reference / best, 3),
        "loader.variants": {f"{fmt}+{resize}": round(1 / s, 2) for (fmt, resize), s in per.items()},
    }
    rate = _gpu_training_rate()
    if rate is not None:
        out["loader.workers_per_gpu"] = math.ceil(rate * best)
        out["loader.workers_per_gpu_at"] = f"{rate} images/s (reports/bench_gpu.json, W48 713 bf16)"
    out["loader.setting_1080p"] = (
        f"{n} Cityscapes-layout 2048x1024 PNGs, shorter side 1080, 713 crops, scale 0.5-2, 1 process"
    )
    return out


_PEAK = """
import resource, sys, torch
from uniseg.model.segmodel import ModelInfo, build_model
torch.manual_seed(0)
k = 70
model = build_model("hrnet_w18_small", "cosine", k).eval()
x = torch.randn(1, 3, 1080, 1920)
with torch.inference_mode():
    if sys.argv[1] == "mine":
        from uniseg.relations.mining import mine_similarities
        mine_similarities(model, [(x, torch.randint(0, k, (1, 1080, 1920)))], k)
    else:
        from uniseg.evaluate.protocols import ScoreMaps, make_target
        union = [f"c{i}" for i in range(k)]
        info = ModelInfo(union, "hrnet_w18_small", "cosine", 20.0, "nullbce", offset=-4.2)
        ScoreMaps(model, info, x, (1080, 1920)).predict(make_target(union[:19], union), "merged")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def bench_peak_memory() -> dict:
    out = {}
    for what in ("mine", "evaluate"):
        proc = subprocess.run(
            [sys.executable, "-c", _PEAK, what], cwd=ROOT, capture_output=True, text=True, check=True
        )
        out[f"{what}.peak_mib_1080p"] = int(proc.stdout.strip().splitlines()[-1])
    out["memory.setting"] = (
        "one 1920x1080 image, batch 1, hrnet_w18_small, 70 classes, peak RSS of a fresh process"
    )
    return out


def bench_train_overhead(tmp: Path, steady: int = 100, warm: int = 10, rounds: int = 3) -> dict:
    """engine.train_model against a bare loop fed by the same loader (same model, loss, optimizer).

    The engine's time for `steady` steps is the difference between a run of warm + steady steps and one
    of `warm` steps: what both spend starting the loader workers and building the first batches cancels,
    and what is left holds the real intervals' logging and checkpoints. The bare loop times its steps
    after `warm` untimed ones. Rounds interleave the three runs; medians are compared."""
    from uniseg.model.inputs import normalise_batch
    from uniseg.model.losses import build_loss, dataset_masks, normalise_loss, sigmoid_prior
    from uniseg.model.segmodel import build_model
    from uniseg.train.engine import TrainJob
    from uniseg.train.loader import TrainSet, make_train_loader

    p = default_corpus(tmp)
    train = p.train

    job = TrainJob.from_params(p, tmp / "shards", tmp / "unused.pt")

    def bare() -> float:
        data = TrainSet(job.shard_dirs, job.union, tuple(train.crop), tuple(train.scale), resize=train.resize)
        loader, sampler = make_train_loader(data, train.batch_size, train.workers, p.seed, train.weights)
        torch.manual_seed(p.seed)
        model = build_model(p.model.backbone, p.model.classifier, len(job.union), p.model.t)
        masks = dataset_masks(job.union, list(job.spaces.values()))
        loss_fn = build_loss("nullbce", masks, None, sigmoid_prior(len(job.union)))
        opt = torch.optim.SGD(
            model.parameters(), lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay
        )
        model.train()
        done, epoch, start = 0, 0, 0.0
        while done < warm + steady:
            sampler.set_epoch(epoch)
            for images, labels, ids in loader:
                if done == warm:
                    start = time.perf_counter()
                loss = normalise_loss(*loss_fn(model(normalise_batch(images)), labels.long(), ids))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                done += 1
                if done == warm + steady:
                    break
            epoch += 1
        return time.perf_counter() - start

    stage, loop = [], []
    for _ in range(rounds):
        short, long = (engine_seconds(p, tmp / "shards", tmp, n) for n in (warm, warm + steady))
        stage.append((long - short) / steady)
        loop.append(bare() / steady)
    ratios = sorted(e / b for e, b in zip(stage, loop, strict=True))
    return {
        "train.overhead_vs_bare_loop": round(statistics.median(stage) / statistics.median(loop), 3),
        "train.overhead_range": [round(ratios[0], 3), round(ratios[-1], 3)],
        "train.setting": (
            f"default profile, {steady} warm iterations ({warm} left out), batch {train.batch_size}, "
            f"{train.workers} loader workers, log every {train.log_every}, checkpoint every "
            f"{train.checkpoint_every}; {rounds} interleaved rounds, medians"
        ),
    }


def run_all(tmp: Path) -> dict:
    result = {}
    print("loader at 1080p ...", flush=True)
    result.update(bench_loader_1080p(tmp / "loader1080"))
    print("peak memory at 1080p ...", flush=True)
    result.update(bench_peak_memory())
    print("training overhead ...", flush=True)
    result.update(bench_train_overhead(tmp / "overhead"))
    return result


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(run_all(Path(tmp)), indent=2))
