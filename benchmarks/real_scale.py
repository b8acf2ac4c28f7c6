"""`make bench` at the paper's resolution: the input pipeline on 1080p shards against one reading the
source PNGs, peak memory of mining and evaluation for one 1080p image, and the training stage's
overhead over a bare loop. Each figure is a ratio measured side by side, or a peak measured in a fresh
process.

- loader.images_per_s_per_worker: training samples (1080p shard -> random scale, 713 crop, flip,
  normalise) per second from one worker; loader.speedup_vs_files: the same over a torchvision-references
  style dataset that opens Cityscapes-layout 2048x1024 PNGs with PIL, converts the labelIds and applies
  the same resize and transforms (goal >= 1.3).
- mine.peak_mib_1080p, evaluate.peak_mib_1080p: peak resident memory (MiB) of a process that mines or
  scores one 1920x1080 image at batch 1 with hrnet_w18_small and the 70-class union (goal <= 2048 each).
- train.overhead_vs_bare_loop: the training stage's time per step (engine.train_model: loader workers,
  logging, checkpoints) over a bare forward/backward/step loop on the same batches (goal <= 1.05).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


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


class FilesDataset(torch.utils.data.Dataset):
    """The torchvision segmentation references' way: open the source PNGs per sample with PIL."""

    def __init__(self, root: Path, union: list[str], transform):
        from uniseg import taxonomy

        self.images = sorted((root / "leftImg8bit" / "val").rglob("*_leftImg8bit.png"))
        self.lut = taxonomy.raw_lut("cityscapes")
        space = taxonomy.label_space("cityscapes")
        self.to_union = taxonomy.space_to_union_lut(space, union).astype(np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        from uniseg.transforms import to_tv

        path = self.images[i]
        label_path = Path(
            str(path).replace("leftImg8bit", "gtFine", 1).replace("_leftImg8bit.png", "_gtFine_labelIds.png")
        )
        image = Image.open(path).convert("RGB")
        label = Image.open(label_path)
        short = 1080 / min(image.size)  # the paper's protocol: shorter side 1080, then the transforms
        size = (round(image.size[0] * short), round(image.size[1] * short))
        image = np.asarray(image.resize(size, Image.Resampling.BILINEAR))
        values = self.lut[np.asarray(label.resize(size, Image.Resampling.NEAREST))]
        label = np.where(values < 0, 255, values).astype(np.uint8)
        img, mask = to_tv(image, label)
        img, mask = self.transform(img, mask)
        return img, torch.from_numpy(self.to_union[mask.numpy()]), 0


def bench_loader_1080p(tmp: Path, n: int = 12, rounds: int = 3) -> dict:
    from uniseg.data import TrainSet
    from uniseg.datasets.real import ingest
    from uniseg.packing import write_shards
    from uniseg.taxonomy import label_space
    from uniseg.transforms import train_transform

    src = tmp / "cityscapes"
    _cityscapes_sources(src, n)
    _cityscapes_sources(src, 1, "train")  # ingestion checks the whole official layout: train and val
    (src / "splits").mkdir()
    (src / "splits" / "val.txt").write_text("".join(f"city/city_{k:06d}_000019\n" for k in range(n)))
    ingest("cityscapes", src, tmp / "raw")
    write_shards(tmp / "raw", tmp / "shards", 1080, 64, 1, progress=False)
    union = label_space("cityscapes")
    shards = TrainSet([tmp / "shards"], union, (713, 713), (0.5, 2.0), split="val")
    files = FilesDataset(src, union, train_transform(1080, (713, 713), (0.5, 2.0)))
    times = {"shards": [], "files": []}
    for r in range(rounds):
        for name, data in (("shards", shards), ("files", files)):
            torch.manual_seed(r)
            start = time.perf_counter()
            for i in range(len(data)):
                data[i]
            times[name].append((time.perf_counter() - start) / len(data))
    per = {k: float(np.median(v)) for k, v in times.items()}
    return {
        "loader.images_per_s_per_worker": round(1 / per["shards"], 2),
        "loader.files_images_per_s_per_worker": round(1 / per["files"], 2),
        "loader.speedup_vs_files": round(per["files"] / per["shards"], 3),
        "loader.setting_1080p": f"{n} Cityscapes-layout 2048x1024 PNGs, shorter side 1080, 713 crops, 1 worker",
    }


_PEAK = """
import resource, sys, torch
from uniseg.models import ModelInfo, build_model
torch.manual_seed(0)
k = 70
model = build_model("hrnet_w18_small", "cosine", k).eval()
x = torch.randn(1, 3, 1080, 1920)
with torch.inference_mode():
    if sys.argv[1] == "mine":
        from uniseg.relations import mine_similarities
        mine_similarities(model, [(x, torch.randint(0, k, (1, 1080, 1920)))], k)
    else:
        from uniseg.protocols import ScoreMaps, make_target
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


def bench_train_overhead(tmp: Path, iters: int = 30) -> dict:
    """engine.train_model against a bare loop over the same batches (same model, loss, optimizer)."""
    from uniseg.data import TrainSet, make_train_loader
    from uniseg.datasets.synthetic import generate_dataset
    from uniseg.engine import TrainJob, train_model
    from uniseg.losses import build_loss, dataset_masks, normalise_loss, sigmoid_prior
    from uniseg.models import build_model
    from uniseg.packing import write_shards
    from uniseg.params import load_params

    p = load_params(ROOT / "params.yaml")
    synthetic = p.synthetic.model_copy(update={"train_images": 64, "val_images": 1})
    for name in p.train.datasets:
        generate_dataset(name, tmp / "raw" / name, synthetic)
        write_shards(tmp / "raw" / name, tmp / "shards" / name, p.shard.short_side, progress=False)
    train = p.train.model_copy(update={"iters": iters, "checkpoint_every": 10, "log_every": 5})
    p = p.model_copy(update={"train": train, "model": p.model.model_copy(update={"pretrained": "none"})})
    job = TrainJob.from_params(p, tmp / "shards", tmp / "m.pt", log_dir=tmp / "log")
    stage = train_model(job, progress=False)["seconds"] / iters
    data = TrainSet(job.shard_dirs, job.union, tuple(train.crop), tuple(train.scale))
    loader, sampler = make_train_loader(data, train.batch_size, 0, p.seed)
    sampler.set_epoch(0)
    batches = [b for _, b in zip(range(iters), loader, strict=False)]
    torch.manual_seed(p.seed)
    model = build_model(p.model.backbone, p.model.classifier, len(job.union), p.model.t)
    loss_fn = build_loss(
        "nullbce", dataset_masks(job.union, list(job.spaces.values())), None, sigmoid_prior(len(job.union))
    )
    opt = torch.optim.SGD(
        model.parameters(), lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay
    )
    model.train()
    start = time.perf_counter()
    for images, labels, ids in batches:
        loss = normalise_loss(*loss_fn(model(images), labels, ids))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    bare = (time.perf_counter() - start) / len(batches)
    return {
        "train.overhead_vs_bare_loop": round(stage / bare, 3),
        "train.setting": f"default profile, {iters} iterations, batch {train.batch_size}, {train.workers} loader workers",
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
