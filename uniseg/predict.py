"""`uniseg predict`: segment image files with a model file; no params.yaml needed.

For every input image, `<out>/<stem>.png` holds the class indices (of the requested label space, or of
the model's union) and `<out>/<stem>.overlay.png` a colour overlay; `<out>/classes.json` names the
indices. With --multilabel-threshold T, a union class outside the label space replaces the prediction
where its sigmoid score exceeds T (the paper's multi-label output, e.g. "bicyclist" on a rider).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from uniseg.errors import UserError, choices
from uniseg.fsio import write_json

SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _expand(inputs: Sequence[Path]) -> list[Path]:
    files = []
    for p in inputs:
        p = Path(p)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in SUFFIXES)
        else:
            files.append(p)
    return files


def _space(name: str | None, union: list[str]) -> list[str]:
    if name is None:
        return list(union)
    from uniseg import taxonomy

    try:
        classes = taxonomy.label_space(name)
    except UserError:
        from uniseg.datasets.synthetic import dataset_names, label_space

        if name not in dataset_names():
            raise UserError(
                f"--label-space: unknown dataset {name!r}; valid: {choices(taxonomy.known_datasets())}"
            ) from None
        classes = label_space(name)
    return classes


def predict_paths(
    inputs: Sequence[Path],
    model_path: Path,
    out_dir: Path,
    label_space: str | None = None,
    multilabel_threshold: float | None = None,
    device: str = "cpu",
    height: int = 0,
) -> list[tuple[str, str]]:
    """Predict every image; returns [(path, why)] for the inputs that could not be read."""
    from uniseg.colours import colourise
    from uniseg.models import flush_denormals, load_model_file
    from uniseg.protocols import make_target, model_probs, predict_labels, upsample
    from uniseg.transforms import eval_image

    if multilabel_threshold is not None and not 0 < multilabel_threshold < 1:
        raise UserError(f"--multilabel-threshold: expected a number in (0, 1), got {multilabel_threshold}")
    flush_denormals()
    model, info = load_model_file(model_path, device)
    if multilabel_threshold is not None and not info.sigmoid:
        raise UserError(
            f"--multilabel-threshold needs a sigmoid model; {model_path} was trained with {info.loss}"
        )
    space = _space(label_space, info.classes)
    target = make_target(space, info.classes)
    evaluated = torch.tensor(target.resolution.evaluated)
    # Output classes: the label space, then (multi-label) the union classes outside it.
    extra = [c for c in info.classes if c not in space] if multilabel_threshold is not None else []
    names = list(space) + extra
    extra_channels = torch.tensor([info.classes.index(c) for c in extra], dtype=torch.long)
    files = _expand(inputs)
    if not files:
        raise UserError(f"no images found in {', '.join(map(str, inputs))} (suffixes {', '.join(SUFFIXES)})")
    out_dir.mkdir(parents=True, exist_ok=True)
    failures = []
    start = time.perf_counter()
    from tqdm import tqdm

    for path in tqdm(files, desc="predict", disable=len(files) < 2):
        try:
            img = Image.open(path)
            img.load()
            rgb = np.asarray(img.convert("RGB"))
        except (OSError, UnidentifiedImageError, SyntaxError) as exc:
            failures.append((str(path), f"cannot be decoded ({exc})"))
            continue
        x = eval_image(torch.from_numpy(rgb.copy()).permute(2, 0, 1), height)[None].to(device)
        with torch.inference_mode():
            probs = upsample(model_probs(model, x, info), rgb.shape[:2])
            label = evaluated[predict_labels(probs, target, "restricted")[0].cpu()]
            if len(extra):
                scores = probs[0, extra_channels.to(probs.device)].cpu()
                best, which = scores.max(0)
                label = torch.where(best > multilabel_threshold, len(space) + which, label)
        label = label.numpy().astype(np.uint8)
        Image.fromarray(label).save(out_dir / f"{path.stem}.png")
        overlay = (0.5 * rgb + 0.5 * colourise(label, names)).astype(np.uint8)
        Image.fromarray(overlay).save(out_dir / f"{path.stem}.overlay.png")
    write_json(
        out_dir / "classes.json",
        {"classes": names, "model": str(model_path), "label_space": label_space or "union"},
    )
    seconds = time.perf_counter() - start
    done = len(files) - len(failures)
    print(
        f"predicted {done} image(s) in {seconds:.1f}s ({done / max(seconds, 1e-9):.1f} images/s) -> {out_dir}",
        flush=True,
    )
    return failures
