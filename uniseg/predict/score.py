"""`uniseg score`: a folder of label PNGs scored against a dataset's ground truth, as the evaluate stage
scores a model (its restricted protocol; the same confusion matrix and IoU, uniseg.metrics).

Ground truth is found as the pipeline finds it: the `val` split of the dataset's shards (a test set's
pinned evaluation list; labels at their stored resolution, label-space indices), or a folder — the
dataset's official layout (read by uniseg.datasets.real on its pinned list, labels converted by its
table), or a `data/raw/<name>` folder (the synthetic canonical layout, or a real dataset's index).

Predictions are single-channel PNGs — 8- or 16-bit grey, or palette PNGs whose indices are the ids; a
colour (RGB) PNG is refused — under the predictions folder (subfolders too), one per image, named
`<key>.png` or `<image stem>.png` as `uniseg predict` names them. Its overlays (`*.overlay.png`) and files
that are not PNGs (its classes.json) are passed over. What the ids mean (`IDS`):

- space: label-space indices, what `uniseg predict --label-space NAME` writes (for the Cityscapes-like
  spaces of Cityscapes, KITTI, WildDash and BDD these are the Cityscapes trainIds; for CamVid CamVid-11's
  ids); 255 is void;
- official: the dataset's official label ids (Cityscapes labelIds for Cityscapes, KITTI and WildDash, BDD
  trainIds, IDD ids, Mapillary v1.2 indices, WildDash 2 ids, and for CamVid, whose official labels are
  colours, CamVid-11's ids), converted through the table its ground truth is converted with
  (uniseg.taxonomy), by class name, so they also score the synthetic stand-ins;
- union: a model's union indices (`uniseg predict` without --label-space), mapped into the label space by
  name as evaluation resolves it (taxonomy.resolve, with the dataset's fallbacks); a union class outside
  the label space is a miss.

Which classes are scored: every class of the label space; given a model (or its union's class names),
only those its union has, as the evaluate stage does (make_target; WildDash 2 scores the missing ones as
never predicted). A labelled pixel predicted void (255, an id the table ignores, a class outside the
scored ones) is a miss: one more confusion column, as the abstain protocol and the Cityscapes script
count it. Two means: `present` over the classes in the ground truth or the prediction (metrics.mean_iou:
the project's and the Cityscapes script's convention), `all` with absent classes counted as 0 (MSeg's).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from uniseg import IGNORE, taxonomy
from uniseg.errors import DataError, UserError, choices
from uniseg.evaluate.protocols import Target, make_target
from uniseg.metrics import confusion_matrix, iou_per_class, mean_iou

IDS = ("space", "official", "union")
SPLIT = "val"  # a test set's evaluation list, a training set's seen val split: what evaluate scores
LABEL_MODES = ("L", "P", "I", "I;16", "I;16B", "I;16L")  # single-channel PIL modes: values are the ids
ID_RANGE = 1 << 16  # 16-bit label PNGs
UNKNOWN = -1  # an id outside the encoding: an error when met
OVERLAY = ".overlay.png"  # uniseg predict's colour overlays, beside its labels
CITYSCAPES_STEM = "_leftImg8bit"  # a Cityscapes-layout image's stem is its key + this


@dataclass(frozen=True)
class Truth:
    """One dataset's evaluation split: its label space and fallbacks, where it was found, and per image
    (key, image stem or None, a function returning its uint8 [H, W] label-space indices, 255 = ignore)."""

    name: str
    classes: list[str]
    fallbacks: dict[str, str]
    where: Path
    samples: list[tuple[str, str | None, Callable[[], np.ndarray]]]


def find_ground_truth(name: str, shards: Path, folder: Path | None = None) -> Truth:
    """The `val` ground truth of dataset `name`: from `<shards>/<name>`, or from `folder` (the official
    layout, or a data/raw/<name> folder)."""
    from uniseg.datasets.index import has_index, read_index
    from uniseg.datasets.layout import list_samples, read_meta
    from uniseg.datasets.real import EVAL_SPLIT, convert_label, find_pairs

    if folder is None:
        return _shard_truth(name, Path(shards) / name)
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: ground-truth folder not found")
    if not (folder / "dataset.json").is_file():  # the official layout, on its pinned evaluation list
        info = taxonomy.dataset_info(name)
        pairs = find_pairs(name, folder, EVAL_SPLIT.get(name, SPLIT))
        samples = [(key, image.stem, partial(convert_label, name, label)) for key, image, label in pairs]
        return Truth(name, list(info.classes), dict(info.fallbacks), folder, samples)
    meta = _check_meta(read_meta(folder), name, folder)
    if meta.source == "synthetic":
        files = list_samples(folder, SPLIT)
        samples = [(s.key, s.image.stem, partial(_read_truth_png, s.label)) for s in files]
    elif has_index(folder):
        files = read_index(folder).get(SPLIT, [])
        samples = [(s.key, s.image.stem, partial(convert_label, name, s.label)) for s in files]
    else:
        raise DataError(
            f"{folder}: neither a synthetic layout nor a real dataset's index; give the official folder"
        )
    return Truth(name, list(meta.classes), dict(meta.fallbacks), folder, _non_empty(samples, folder))


def _shard_truth(name: str, folder: Path) -> Truth:
    from uniseg.datasets.layout import read_meta
    from uniseg.shards import ShardReader

    if not (folder / "dataset.json").is_file():
        raise DataError(
            f"{folder}: no shards of {name}; run `dvc repro shard@{name}` or give --ground-truth DIR "
            "(the dataset's official layout)"
        )
    _check_meta(read_meta(folder), name, folder)
    reader = ShardReader(folder)
    keys = reader.manifest["key"]
    samples = [(str(keys.iloc[i]), None, partial(_shard_label, reader, i)) for i in reader.indices(SPLIT)]
    return Truth(
        name, list(reader.meta.classes), dict(reader.meta.fallbacks), folder, _non_empty(samples, folder)
    )


def _check_meta(meta, name: str, folder: Path):
    if meta.name != name:
        raise DataError(f"{folder}/dataset.json describes {meta.name!r}, not {name!r}")
    if meta.source == "absent":
        raise DataError(
            f"{folder}: {name} was not found when download@{name} ran (optional; README, Real data): put it "
            f"under data.root and run `dvc repro -f download@{name}`, or give --ground-truth DIR"
        )
    return meta


def _non_empty(samples: list, folder: Path) -> list:
    if not samples:
        raise DataError(f"{folder}: no image in its {SPLIT} split")
    return samples


def _shard_label(reader, i: int) -> np.ndarray:
    from io import BytesIO

    # Only the label is decoded (the image is not needed): read_raw gives the encoded bytes.
    return np.asarray(Image.open(BytesIO(reader.read_raw(i)["label"])).convert("L"))


def _open_png(path: Path, what: str) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
        return img
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot be decoded as {what} ({exc})") from None


def _read_truth_png(path: Path) -> np.ndarray:
    return np.asarray(_open_png(path, "a label image").convert("L"))


def read_prediction(path: Path) -> np.ndarray:
    """The ids of one prediction PNG, int64 [H, W]: grey values, or a palette PNG's indices (not its
    colours). DataError for an unreadable file or a colour image."""
    img = _open_png(path, "a prediction PNG")
    if img.mode not in LABEL_MODES:
        raise DataError(
            f"{path}: a {img.mode} image; a prediction is single-channel label ids (8- or 16-bit grey, or "
            "a palette PNG whose indices are the ids), not colours"
        )
    return np.asarray(img).astype(np.int64)


def match_predictions(folder: Path, truth: Truth) -> dict[str, Path]:
    """{key: prediction PNG} for every image of `truth`: `<key>.png` or `<image stem>.png` anywhere under
    `folder` (predict's overlays passed over). DataError naming the file for a PNG that is no image of the
    split, two predictions of one image, or a name several images share; naming the expected file for an
    image without a prediction."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: predictions folder not found")
    names: dict[str, set[str]] = {}
    for key, stem, _ in truth.samples:
        for name in {key, key + CITYSCAPES_STEM, stem or key}:
            names.setdefault(name, set()).add(key)
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*.png")):
        if path.name.endswith(OVERLAY):
            continue
        keys = names.get(path.stem)
        if keys is None:
            raise DataError(f"{path}: {_not_an_image(path, truth)}")
        if len(keys) > 1:
            shared = ", ".join(sorted(keys)[:3])
            raise DataError(
                f"{path}: the name of {len(keys)} images ({shared}); name each prediction by its key"
            )
        key = next(iter(keys))
        if key in found:
            raise DataError(f"{path}: a second prediction of {key} (also {found[key]})")
        found[key] = path
    missing = [key for key, _, _ in truth.samples if key not in found]
    if missing:
        raise DataError(
            f"{folder / (missing[0] + '.png')}: missing; {len(missing)} of the {len(truth.samples)} images of "
            f"{truth.name} ({truth.where}) have no prediction"
        )
    return found


def _not_an_image(path: Path, truth: Truth) -> str:
    example = truth.samples[0][0]
    what = f"not an image of {truth.name}'s {SPLIT} split ({truth.where}); predictions are named <key>.png, e.g. {example}.png"
    stem, _, kind = path.stem.rpartition(".")
    if kind in ("label", "world") and any(stem == key for key, _, _ in truth.samples):
        what += f" (a prediction of the {kind} file? give uniseg predict the images only)"
    return what


def read_union(model: Path | None, classes: Path | None) -> tuple[list[str] | None, str | None]:
    """(the union's class names, where they came from) from a model file or a class-name file (a JSON list,
    or an object with "classes" as `uniseg predict` writes classes.json); (None, None) for neither."""
    if model is not None and classes is not None:
        raise UserError("give --model or --classes, not both (each names the union)")
    if model is not None:
        from uniseg.model.segmodel import read_model_file

        return list(read_model_file(model)[1].classes), str(model)
    if classes is None:
        return None, None
    try:
        data = json.loads(Path(classes).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{classes}: cannot be read as JSON ({exc})") from None
    names = data.get("classes") if isinstance(data, dict) else data
    if not isinstance(names, list) or not names or not all(isinstance(c, str) for c in names):
        raise UserError(f'{classes}: expected a JSON list of class names or {{"classes": [...]}}')
    return names, str(classes)


def _predicted_space(folder: Path) -> str | None:
    """The label space `uniseg predict` recorded in the folder's classes.json ("union" or a dataset), if any."""
    path = Path(folder) / "classes.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # no such file, or not predict's: nothing to check against
    space = data.get("label_space") if isinstance(data, dict) else None
    return space if isinstance(space, str) else None


def prediction_lut(ids: str, name: str, truth: Truth, union: list[str] | None = None) -> np.ndarray:
    """int64 [ID_RANGE]: a prediction id -> the label-space index of `truth`, IGNORE (void: a miss on a
    labelled pixel) or UNKNOWN (not an id of that encoding)."""
    lut = np.full(ID_RANGE, UNKNOWN, dtype=np.int64)
    position = {c: k for k, c in enumerate(truth.classes)}
    if ids == "space":
        lut[: len(truth.classes)] = np.arange(len(truth.classes))
    elif ids == "official":
        if name not in taxonomy.known_datasets():
            raise UserError(f"--ids official: {name} has no official ids uniseg knows; use --ids space")
        info = taxonomy.dataset_info(name)
        if info.encoding == "rgb":  # CamVid: the official labels are colours; CamVid-11's ids are its order
            raw = dict(enumerate(info.classes))
        else:
            table = taxonomy.raw_lut(name).tolist()
            raw = {
                v: info.classes[t] if t != IGNORE else None
                for v, t in enumerate(table)
                if t != taxonomy.UNKNOWN
            }
        for value, c in raw.items():
            lut[value] = position.get(c, IGNORE)  # by name: the synthetic stand-ins' spaces too
    else:
        if union is None:
            raise UserError(
                "--ids union needs the union's class names: --model MODEL, or --classes FILE (the classes.json "
                "that `uniseg predict` writes beside union predictions)"
            )
        resolution = taxonomy.resolve(truth.classes, union, truth.fallbacks)
        lut[: len(union)] = IGNORE  # a union class outside the label space: a miss
        for k in reversed(range(len(truth.classes))):  # the first class a channel scores wins, as argmax
            if resolution.union_index[k] is not None:
                lut[resolution.union_index[k]] = k
    if lut[IGNORE] == UNKNOWN:  # 255 is void in every encoding (uniseg predict's abstention)
        lut[IGNORE] = IGNORE
    return lut


def _valid(ids: str, truth: Truth, union: list[str] | None) -> str:
    if ids == "space":
        return f"0-{len(truth.classes) - 1} ({truth.name}'s label space) and 255 (void); official ids: --ids official"
    if ids == "union":
        return f"0-{len(union or []) - 1} (the union) and 255 (void)"
    return f"the ids of {truth.name}'s label table (uniseg/taxonomy)"


def score_predictions(
    name: str,
    predictions: Path,
    shards: Path = Path("data/shards"),
    ground_truth: Path | None = None,
    ids: str = "space",
    model: Path | None = None,
    classes: Path | None = None,
    progress: bool = False,
) -> dict:
    """Score the predictions folder against dataset `name`'s val ground truth (see the module's
    docstring). Returns a JSON-ready dict: dataset, ground_truth, predictions, ids, union (where its names
    came from, or None: every class scored), images, mean_iou {"present", "all"} and iou per class (percent,
    unrounded; None for a class in neither ground truth nor prediction), classes_present, not_scored (classes
    the union lacks), fallbacks, void_pixels (labelled pixels predicted void) and the confusion matrix
    (pixels; rows ground truth, columns prediction, then void). Every input is checked before the result
    exists: a DataError names the first bad file."""
    if ids not in IDS:
        raise UserError(f"--ids: unknown {ids!r}; valid: {choices(IDS)}")
    truth = find_ground_truth(name, shards, ground_truth)
    found = match_predictions(predictions, truth)
    union, source = read_union(model, classes)
    recorded = _predicted_space(predictions)
    if ids == "union" and union is None and recorded == "union":
        union, source = read_union(None, Path(predictions) / "classes.json")
    _check_recorded(recorded, ids, name, predictions)
    score_missing = name in taxonomy.known_datasets() and taxonomy.dataset_info(name).score_missing
    target = make_target(truth.classes, union or truth.classes, truth.fallbacks, score_missing=score_missing)
    lut = _compact_lut(prediction_lut(ids, name, truth, union), target)
    m = target.size
    conf = torch.zeros(m + 1, m + 1, dtype=torch.float64)
    gt_lut = target.lut.numpy()
    expected = f"a {ids} id of {name}; valid: {_valid(ids, truth, union)}"
    with _progress(truth.samples, progress) as samples:  # closed, its line cleared, before an error prints
        for key, _, read_label in samples:
            gt = read_label()
            pred = _compact_prediction(found[key], gt.shape, lut, expected)
            conf += confusion_matrix(torch.from_numpy(pred), torch.from_numpy(gt_lut[gt]), m + 1)
    return _result(conf, target, truth, predictions, ids, source)


def _compact_prediction(path: Path, shape: tuple, lut: np.ndarray, expected: str) -> np.ndarray:
    """One prediction PNG as compact target indices int64 [H, W] (lut: _compact_lut's; m = void);
    DataError naming the file for a size other than the ground truth's `shape` or an id outside the
    encoding (`expected`: what an id should be, for the message)."""
    raw = read_prediction(path)
    if raw.shape != shape:
        raise DataError(
            f"{path}: size {raw.shape[1]}x{raw.shape[0]} differs from the ground truth's {shape[1]}x{shape[0]}; "
            "predictions are scored at the ground truth's size, not resized"
        )
    bad = (raw < 0) | (raw >= ID_RANGE)
    pred = np.where(bad, UNKNOWN, lut[np.where(bad, 0, raw)])
    if (pred == UNKNOWN).any():
        value = int(raw[pred == UNKNOWN][0])
        raise DataError(f"{path}: id {value} is not {expected}")
    return pred


def _check_recorded(recorded: str | None, ids: str, name: str, folder: Path) -> None:
    """Refuse predictions whose classes.json (uniseg predict's) says they hold other ids than --ids says."""
    if recorded is None:
        return
    if ids == "official":  # predict writes label-space or union indices, never a dataset's official ids
        raise UserError(
            f"{Path(folder) / 'classes.json'}: uniseg predict wrote {recorded} indices here, not official ids; "
            f"use --ids {'union' if recorded == 'union' else 'space'}"
        )
    if ids == "space" and recorded == "union":
        raise UserError(
            f"{Path(folder) / 'classes.json'}: these are union indices; score them with --ids union"
        )
    if ids == "space" and recorded != name:
        raise UserError(
            f"{Path(folder) / 'classes.json'}: predicted in {recorded}'s label space, not {name}'s"
        )
    if ids == "union" and recorded != "union":
        raise UserError(
            f"{Path(folder) / 'classes.json'}: predicted in {recorded}'s label space; use --ids space"
        )


def _compact_lut(space: np.ndarray, target: Target) -> np.ndarray:
    """A prediction id -> the target's compact index, m for void (IGNORE, or a class not scored), UNKNOWN."""
    compact = target.lut.numpy()[np.clip(space, 0, IGNORE)]
    compact[compact == IGNORE] = target.size
    return np.where(space == UNKNOWN, UNKNOWN, compact)


def _progress(samples: list, show: bool):
    from tqdm import tqdm

    # A bar only where someone watches: logs and captured stderr keep the one-line error.
    return tqdm(samples, desc="score", disable=not show or not sys.stderr.isatty(), leave=False)


def _result(conf: torch.Tensor, target: Target, truth: Truth, predictions: Path, ids: str, source) -> dict:
    m = target.size
    iou = iou_per_class(conf)[:m]
    present, count = mean_iou(conf, list(range(m)))
    every = 100.0 * float(torch.nan_to_num(iou, nan=0.0).mean())  # MSeg: an absent class scores 0
    scored_missing = set(target.scored_missing)
    return {
        "dataset": truth.name,
        "ground_truth": str(truth.where),
        "predictions": str(predictions),
        "ids": ids,
        "union": source,
        "images": len(truth.samples),
        "mean_iou": {"present": present if count else None, "all": every},
        "classes_present": count,
        "iou": {
            c: None if np.isnan(v) else 100.0 * v for c, v in zip(target.evaluated, iou.tolist(), strict=True)
        },
        "not_scored": [c for c in target.resolution.missing if c not in scored_missing],
        "fallbacks": dict(target.resolution.fallbacks_used),
        "void_pixels": int(conf[:m, m].sum()),
        "confusion": [[int(v) for v in row] for row in conf[:m].tolist()],
    }
