"""GPU figures (one CUDA device): training speed at the paper's setting, bf16 against fp32, memory, the
losses' cost, evaluation memory at 1080p, and the embedded benchmark's training speed.

    python -m benchmarks.gpu --out reports/bench_gpu.json     (needs a CUDA device; CI has none)

Each `train.*` figure is a plain loop over the library's model and loss (forward, loss, backward, SGD
step) on random batches of the given size, timed with CUDA synchronisation after warm-up steps. The
`engine.*` figures time the training stage itself (engine.train_model: 1080p JPEG shards, window
resize, loader workers, logging and checkpoints) beside that loop with the same classes; `profile.*`
traces ten steps of the bare loop with torch.profiler: host time against the time the GPU is busy.
Multi-GPU (DDP) scaling needs more than one device: with one, it is not measured.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def _setup(backbone: str, k: int, classifier: str, loss_name: str, offset: float):
    from uniseg.model.losses import build_loss
    from uniseg.model.segmodel import build_model

    model = build_model(backbone, classifier, k).cuda().to(memory_format=torch.channels_last)
    masks = torch.ones(4, k, dtype=torch.bool)
    masks[:, k // 2 :] = torch.rand(4, k - k // 2) < 0.5  # datasets with partial label spaces
    loss = build_loss(loss_name, masks.cuda(), None, offset)
    return model, loss


def train_speed(
    backbone, crop, batch, amp, loss_name="nullbce", k=70, steps=20, warmup=5, compile_=False
) -> dict:
    """images/s and peak memory of forward + loss + backward + SGD step."""
    from uniseg.model.losses import normalise_loss

    torch.manual_seed(0)
    model, loss_fn = _setup(backbone, k, "cosine", loss_name, -4.2 if loss_name != "ce" else 0.0)
    net = torch.compile(model) if compile_ else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, *crop, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, k, (batch, *crop), device="cuda")
    ids = torch.arange(batch, device="cuda") % 4
    torch.cuda.reset_peak_memory_stats()

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            logits = net(x)
        total, count = loss_fn(logits, y, ids)
        opt.zero_grad(set_to_none=True)
        normalise_loss(total, count).backward()
        opt.step()

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    return {
        "images_per_s": round(batch / seconds, 1),
        "step_ms": round(1000 * seconds, 1),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
    }


def engine_speed(
    tmp: Path, backbone="hrnet_w48", crop=(713, 713), batch=8, steps=40, warm=10, workers=8, images=48
) -> dict:
    """The training stage's images/s over `steps` warm steps (a run of warm + steps minus one of warm:
    worker start and first batches cancel) on Cityscapes-layout 1080p shards in the paper's profile,
    beside the bare loop's on random batches with the same classes (19)."""
    from benchmarks.real_scale import cityscapes_raw, engine_seconds
    from uniseg.params import load_params
    from uniseg.shards.packing import write_shards

    root = Path(__file__).resolve().parents[1]
    shards = tmp / "shards"
    if not (shards / "cityscapes" / "manifest.parquet").is_file():
        raw = cityscapes_raw(tmp, images)
        write_shards(raw, shards / "cityscapes", 1080, 64, 8, progress=False, image_format="jpeg")
    p = load_params(root / "params.paper.yaml")
    train = p.train.model_copy(
        update={
            "datasets": ["cityscapes"],
            "batch_size": batch,
            "crop": list(crop),
            "devices": 1,
            "workers": workers,
        }
    )
    p = p.model_copy(
        update={
            "train": train,
            "model": p.model.model_copy(update={"backbone": backbone, "pretrained": "none"}),
        }
    )

    seconds = (engine_seconds(p, shards, tmp, warm + steps) - engine_seconds(p, shards, tmp, warm)) / steps
    bare = train_speed(backbone, crop, batch, p.train.amp, k=19)
    engine = batch / seconds
    return {
        "images_per_s": round(engine, 1),
        "step_ms": round(1000 * seconds, 1),
        "bare_images_per_s": bare["images_per_s"],
        "engine_over_bare": round(engine / bare["images_per_s"], 3),
    }


def profile_steps(out_dir: Path, backbone="hrnet_w48", crop=(713, 713), batch=8, steps=10, k=70) -> dict:
    """torch.profiler over `steps` warm steps of the bare loop: wall time, host (CPU) time and GPU busy
    time per step, operators per step; the Chrome trace is written beside the results."""
    from torch.profiler import ProfilerActivity, profile

    from uniseg.model.losses import normalise_loss

    torch.manual_seed(0)
    model, loss_fn = _setup(backbone, k, "cosine", "nullbce", -4.2)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, *crop, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, k, (batch, *crop), device="cuda")
    ids = torch.arange(batch, device="cuda") % 4

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(x)
        total, count = loss_fn(logits, y, ids)
        opt.zero_grad(set_to_none=True)
        normalise_loss(total, count).backward()
        opt.step()

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        wall = (time.perf_counter() - start) / steps
    out_dir.mkdir(parents=True, exist_ok=True)
    prof.export_chrome_trace(str(out_dir / f"profile_{backbone}.json"))
    events = prof.key_averages()
    gpu_us = sum(e.self_device_time_total for e in events)
    host_us = sum(e.self_cpu_time_total for e in events)
    ops = sum(e.count for e in events if e.key.startswith("aten::"))
    top = sorted(events, key=lambda e: e.self_device_time_total, reverse=True)[:8]
    return {
        "wall_ms_per_step": round(1000 * wall, 1),
        "gpu_busy_ms_per_step": round(gpu_us / 1000 / steps, 1),
        "host_ms_per_step": round(host_us / 1000 / steps, 1),
        "gpu_busy_fraction": round(gpu_us / 1e6 / steps / wall, 3),
        "aten_ops_per_step": round(ops / steps),
        "top_gpu_ms_per_step": {e.key[:60]: round(e.self_device_time_total / 1000 / steps, 2) for e in top},
    }


def loss_ratios(k=70, batch=8, crop=(713, 713), rounds=20) -> dict:
    """Forward + backward of each loss on the same logits, over softmax CE (as benchmarks/run.py on CPU)."""
    from uniseg import taxonomy
    from uniseg.model.losses import build_loss, dataset_masks, relation_targets

    datasets = ["cityscapes", "bdd", "idd", "mapillary"]
    spaces = {d: taxonomy.label_space(d) for d in datasets}
    union = taxonomy.union(spaces.values())
    masks = dataset_masks(union, list(spaces.values())).cuda()
    targets = relation_targets(
        union, spaces, [("mapillary", a, b) for a, b, _ in taxonomy.paper_relations()]
    ).cuda()
    logits = torch.randn(batch, len(union), *crop, device="cuda")
    ids = torch.arange(batch, device="cuda") % 4
    labels = torch.stack(
        [masks[i].nonzero().flatten()[torch.randint(int(masks[i].sum()), crop, device="cuda")] for i in ids]
    )
    times = {}
    for name in ("ce", "nullbce", "crbce"):
        fn = build_loss(name, masks, targets if name == "crbce" else None, -4.2 if name != "ce" else 0.0)
        for _ in range(3):
            x = logits.clone().requires_grad_(True)
            t, c = fn(x, labels, ids)
            (t / c).backward()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(rounds):
            x = logits.clone().requires_grad_(True)
            t, c = fn(x, labels, ids)
            (t / c).backward()
        torch.cuda.synchronize()
        times[name] = (time.perf_counter() - start) / rounds
    return {f"loss.{n}_over_ce": round(times[n] / times["ce"], 3) for n in ("nullbce", "crbce")} | {
        "loss.ce_ms": round(1000 * times["ce"], 2)
    }


@torch.inference_mode()
def eval_1080p(backbone="hrnet_w18_small", k=70) -> dict:
    """Scoring one 1920x1080 image in a 19-class label space: seconds and peak GPU memory (ScoreMaps)."""
    from uniseg.evaluate.protocols import ScoreMaps, make_target
    from uniseg.model.segmodel import ModelInfo, build_model

    union = [f"c{i}" for i in range(k)]
    model = build_model(backbone, "cosine", k).cuda().eval()
    info = ModelInfo(union, backbone, "cosine", 20.0, "nullbce", offset=-4.2)
    target = make_target(union[:19], union)
    x = torch.randn(1, 3, 1080, 1920, device="cuda")
    ScoreMaps(model, info, x, (1080, 1920)).predict(target)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    ScoreMaps(model, info, x, (1080, 1920)).predict(target)
    torch.cuda.synchronize()
    return {
        "seconds": round(time.perf_counter() - start, 3),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
    }


@torch.inference_mode()
def mine_1080p(backbone="hrnet_w18_small", k=70) -> dict:
    """Mining (eq. 7) over one 1920x1080 image with 70 classes: seconds and peak GPU memory."""
    from uniseg.model.segmodel import build_model
    from uniseg.relations.mining import mine_similarities

    model = build_model(backbone, "cosine", k).cuda().eval()
    x = torch.randn(1, 3, 1080, 1920, device="cuda")
    labels = torch.randint(0, k, (1, 1080, 1920), device="cuda")
    mine_similarities(model, [(x, labels)], k, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    mine_similarities(model, [(x, labels)], k, device="cuda")
    torch.cuda.synchronize()
    return {
        "seconds": round(time.perf_counter() - start, 3),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/bench_gpu.json"))
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to build)")
    parser.add_argument("--only", default="", help="comma-separated key prefixes to run (default: all)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks.gpu needs a CUDA device")
    torch.backends.cudnn.benchmark = True
    out: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}

    def record(key, fn, *a, **kw):
        if args.only and not any(key.startswith(k) for k in args.only.split(",")):
            return
        start = time.perf_counter()
        try:
            out[key] = fn(*a, **kw)
        except Exception as exc:  # a figure that fails (e.g. out of memory) is reported, the rest still run
            out[key] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
        print(f"{key}: {out[key]} ({time.perf_counter() - start:.0f}s)", flush=True)
        torch.cuda.empty_cache()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")  # after each figure: a timeout keeps the rest

    # The paper's setting per GPU: HRNet-W48, 713x713 crops, batch 8 (32 over 4 GPUs), 70 classes.
    for amp in (False, True):
        record(f"train.w48_713_b8.{'bf16' if amp else 'fp32'}", train_speed, "hrnet_w48", (713, 713), 8, amp)
    record("train.w48_713_b16.bf16", train_speed, "hrnet_w48", (713, 713), 16, True)
    record("train.w18_713_b8.bf16", train_speed, "hrnet_w18", (713, 713), 8, True)
    record("train.w18_713_b8.fp32", train_speed, "hrnet_w18", (713, 713), 8, False)
    # The embedded benchmark's setting (hrnet_w18_small, 128x256 crops, batch 8).
    record("train.w18small_128x256_b8.fp32", train_speed, "hrnet_w18_small", (128, 256), 8, False)
    record("train.w18small_128x256_b8.bf16", train_speed, "hrnet_w18_small", (128, 256), 8, True)
    record("train.w18small_128x256_b8.ce_bf16", train_speed, "hrnet_w18_small", (128, 256), 8, True, "ce")
    record("loss_713_b8", loss_ratios)
    record("evaluate.1080p_w18small", eval_1080p)
    record("evaluate.1080p_w48", eval_1080p, "hrnet_w48")
    record("mine.1080p_w18small", mine_1080p)
    # The training stage itself, and where a step's time goes.
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        record("engine.w48_713_b8.bf16", engine_speed, Path(tmp))
        record("engine.w18_713_b8.bf16", engine_speed, Path(tmp), "hrnet_w18")
    record("profile.w48_713_b8.bf16", profile_steps, args.out.parent / "profiles")
    record("profile.w18_713_b8.bf16", profile_steps, args.out.parent / "profiles", "hrnet_w18")
    if args.compile:
        record("train.w48_713_b8.bf16_compiled", train_speed, "hrnet_w48", (713, 713), 8, True, compile_=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
