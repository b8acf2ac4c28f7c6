"""`uniseg predict`: segment image files with a model file; no params.yaml needed.

For every input image, `<out>/<stem>.png` holds the class indices (of the requested label space, or of
the model's union) and `<out>/<stem>.overlay.png` a colour overlay; `<out>/classes.json` names the
indices. With --multilabel-threshold T, a union class outside the label space replaces the prediction
where its sigmoid score exceeds T (the paper's multi-label output, e.g. "bicyclist" on a rider). With
--abstain-threshold θ, a pixel whose top probability is below θ is void (255; abstain.py). With
--submission FILE.zip (and --label-space wilddash2), the benchmark's zip instead (submission.py), void
where the model abstains (θ: the one the evaluate stage recorded, unless given). With runtime "onnx",
the model is a file that `uniseg export` wrote, run by ONNX Runtime (export.py), its ModelInfo read from
the file's metadata; everything after the class probabilities is the same code.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from uniseg import IGNORE
from uniseg.errors import UserError, choices
from uniseg.fsio import write_json

SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
RUNTIMES = ("torch", "onnx")


def _expand(inputs: Sequence[Path]) -> list[Path]:
    files = []
    for p in inputs:
        p = Path(p)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in SUFFIXES)
        else:
            files.append(p)
    return files


def _space(name: str | None, union: list[str]) -> tuple[list[str], dict[str, str]]:
    """The classes of `--label-space` (default: the union) and their fallbacks (a class the union lacks ->
    the union class scored in its place, e.g. CamVid's bicyclist -> rider), as evaluation resolves them."""
    if name is None:
        return list(union), {}
    from uniseg import taxonomy

    try:
        info = taxonomy.dataset_info(name)
        return list(info.classes), dict(info.fallbacks)
    except UserError:
        from uniseg.datasets.synthetic import dataset_names, label_space, load_policy

        if name not in dataset_names():
            raise UserError(
                f"--label-space: unknown dataset {name!r}; valid: {choices(taxonomy.known_datasets())}"
            ) from None
        classes, like = label_space(name), load_policy(name).like
        fallbacks = taxonomy.dataset_info(like).fallbacks if like else {}
        return classes, {c: f for c, f in fallbacks.items() if c in classes}


def _threshold(model_path: Path, given: float | None, eval_dir: Path) -> float:
    """The abstention threshold: the one given, else the one the evaluate stage recorded for the model
    file `model_path` (its stem names its folder under `eval_dir`)."""
    if given is not None:
        if not 0 < given < 1:
            raise UserError(f"--abstain-threshold: expected a number in (0, 1), got {given}")
        return given
    from uniseg.scores import read_details

    path = Path(eval_dir) / Path(model_path).stem / "details.json"
    theta = (
        read_details(eval_dir, Path(model_path).stem)["model"].get("abstain_threshold")
        if path.is_file()
        else None
    )
    if theta is None:
        raise UserError(
            f"no abstention threshold for {model_path}: pass --abstain-threshold (the evaluate stage records "
            f"one, chosen on the seen val splits, in {path})"
        )
    return float(theta)


def _load(model_path: Path, runtime: str, device: str):
    """(scores, info, the model file the evaluate stage knows it by): `scores` maps normalised images
    [B, 3, h, w] to class probabilities [B, K, h, w] — PyTorch on a model file, or ONNX Runtime on a
    `uniseg export` file (whose metadata names the model file it came from)."""
    if runtime not in RUNTIMES:
        raise UserError(f"--runtime: unknown runtime {runtime!r}; valid: {choices(RUNTIMES)}")
    if runtime == "onnx":
        from uniseg.predict.export import OnnxModel

        model = OnnxModel(model_path, device)
        return model.probs, model.info, Path(model.metadata.get("uniseg.source", model_path))
    if Path(model_path).suffix == ".onnx":
        raise UserError(f"{model_path}: an ONNX file; predict it with --runtime onnx")
    from uniseg.evaluate.protocols import model_probs
    from uniseg.model.segmodel import load_model_file, tune_cpu

    tune_cpu()
    model, info = load_model_file(model_path, device)
    return (lambda x: model_probs(model, x, info)), info, Path(model_path)


def predict_paths(
    inputs: Sequence[Path],
    model_path: Path,
    out_dir: Path | None,
    label_space: str | None = None,
    multilabel_threshold: float | None = None,
    device: str = "cpu",
    height: int = 0,
    abstain_threshold: float | None = None,
    submission: Path | None = None,
    eval_dir: Path = Path("reports/eval"),
    runtime: str = "torch",
) -> list[tuple[str, str]]:
    """Predict every image with a model file (`runtime` "torch") or an exported ONNX file ("onnx");
    returns [(path, why)] for the inputs that could not be read. With `submission`, write the benchmark's
    zip instead (submission.py): every image must be read (else a UserError and no zip), and pixels below
    the abstention threshold are void."""
    if multilabel_threshold is not None and not 0 < multilabel_threshold < 1:
        raise UserError(f"--multilabel-threshold: expected a number in (0, 1), got {multilabel_threshold}")
    if submission is not None:
        if label_space is None or multilabel_threshold is not None:
            raise UserError("--submission needs --label-space (e.g. wilddash2) and no --multilabel-threshold")
        from uniseg.predict.submission import submission_ids

        submission_ids(label_space)  # a label space without a submission format fails before any work
    elif out_dir is None:
        raise UserError("give --out DIR (label PNGs and overlays) or --submission FILE.zip")
    elif abstain_threshold is not None and not 0 < abstain_threshold < 1:
        raise UserError(f"--abstain-threshold: expected a number in (0, 1), got {abstain_threshold}")
    scores, info, known_as = _load(model_path, runtime, device)
    if submission is not None:
        abstain_threshold = _threshold(known_as, abstain_threshold, eval_dir)
    if multilabel_threshold is not None and not info.sigmoid:
        raise UserError(
            f"--multilabel-threshold needs a sigmoid model; {model_path} was trained with {info.loss}"
        )
    files = _expand(inputs)
    if not files:
        raise UserError(f"no images found in {', '.join(map(str, inputs))} (suffixes {', '.join(SUFFIXES)})")
    predictor = _Predictor(
        scores,
        info,
        _space(label_space, info.classes),
        multilabel_threshold,
        abstain_threshold,
        "cpu" if runtime == "onnx" else device,  # ONNX Runtime takes CPU arrays on any device
        height,
    )
    start = time.perf_counter()
    if submission is not None:
        stems = [f.stem for f in files]
        if len(set(stems)) < len(stems):
            duplicate = next(s for s in stems if stems.count(s) > 1)
            raise UserError(f"--submission: two images are named {duplicate!r}; one file per test image")
        from uniseg.predict.submission import write_submission

        n = write_submission(
            ((f.stem, predictor.label(f, strict=True)[1]) for f in _progress(files)), label_space, submission
        )
        print(f"wrote {n} predictions in {time.perf_counter() - start:.1f}s -> {submission}", flush=True)
        return []
    return predictor.to_folder(files, out_dir, model_path, label_space, start)


def _progress(files):
    from tqdm import tqdm

    return tqdm(files, desc="predict", disable=len(files) < 2)


class _Predictor:
    """One model's predictions in a label space (restricted argmax), with the multi-label override and
    abstention where asked."""

    def __init__(self, scores, info, space, multilabel_threshold, abstain_threshold, device, height):
        space, fallbacks = space
        from uniseg.evaluate.protocols import make_target

        # scores: normalised images [B, 3, h, w] on `device` -> class probabilities [B, K, h, w]
        self.scores, self.info, self.space, self.device, self.height = scores, info, space, device, height
        self.multilabel, self.abstain = multilabel_threshold, abstain_threshold
        self.target = make_target(space, info.classes, fallbacks)
        self.evaluated = torch.tensor(self.target.resolution.evaluated)
        # Output classes: the label space, then (multi-label) the union classes outside it.
        self.extra = [c for c in info.classes if c not in space] if multilabel_threshold is not None else []
        self.names = list(space) + self.extra
        self.extra_channels = torch.tensor([info.classes.index(c) for c in self.extra], dtype=torch.long)

    def label(self, path: Path, strict: bool = False) -> tuple[np.ndarray | None, np.ndarray | str]:
        """(rgb, uint8 label [H, W]) of one image, or (None, why) when it cannot be decoded (UserError
        when `strict`)."""
        from uniseg.evaluate.protocols import upsample
        from uniseg.model.inputs import eval_image

        try:
            img = Image.open(path)
            img.load()
            rgb = np.asarray(img.convert("RGB"))
        except (OSError, UnidentifiedImageError, SyntaxError) as exc:
            if strict:
                raise UserError(f"{path}: cannot be decoded ({exc}); no submission written") from None
            return None, f"cannot be decoded ({exc})"
        x = eval_image(torch.from_numpy(rgb.copy()).permute(2, 0, 1), self.height)[None].to(self.device)
        with torch.inference_mode():
            probs = upsample(self.scores(x), rgb.shape[:2])
            top = probs.index_select(1, self.target.channels.to(probs.device))[0].max(0)
            label = self.evaluated[top.indices.cpu()]
            if self.abstain is not None:
                label = torch.where(top.values.cpu() < self.abstain, IGNORE, label)
            if len(self.extra):
                scores = probs[0, self.extra_channels.to(probs.device)].cpu()
                best, which = scores.max(0)
                label = torch.where(best > self.multilabel, len(self.space) + which, label)
        return rgb, label.numpy().astype(np.uint8)

    def to_folder(self, files, out_dir: Path, model_path: Path, label_space, start: float) -> list:
        from uniseg.colours import colourise

        out_dir.mkdir(parents=True, exist_ok=True)
        failures = []
        for path in _progress(files):
            rgb, label = self.label(path)
            if rgb is None:
                failures.append((str(path), label))
                continue
            Image.fromarray(label).save(out_dir / f"{path.stem}.png")
            overlay = (0.5 * rgb + 0.5 * colourise(label, self.names)).astype(np.uint8)
            Image.fromarray(overlay).save(out_dir / f"{path.stem}.overlay.png")
        write_json(
            out_dir / "classes.json",
            {"classes": self.names, "model": str(model_path), "label_space": label_space or "union"},
        )
        seconds = time.perf_counter() - start
        done = len(files) - len(failures)
        print(
            f"predicted {done} image(s) in {seconds:.1f}s ({done / max(seconds, 1e-9):.1f} images/s) -> {out_dir}",
            flush=True,
        )
        return failures
