"""Adapters for the real datasets' official on-disk layouts and label encodings.

Each adapter is data (LAYOUTS): for every split, where the images are (a glob under the dataset root)
and how a label path follows from an image path (a regex substitution). Label values are converted
with the dataset's taxonomy table (uniseg/taxonomy): `ids` tables map raw ids, `rgb` tables map colours
(CamVid). Every raw value maps to a label-space index or to ignore (255); an unknown value is an error
that names the file and the value.

Split lists: where the evaluation protocol uses a subset (KITTI's 50 validation images, CamVid's 233
test images, as in MSeg), put a list file at `<root>/splits/<split>.txt` (one image path or stem per
line; MSeg's list files work as they are). Without one, the split is every image the layout finds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from uniseg import IGNORE, taxonomy
from uniseg.datasets.layout import DatasetMeta, write_meta
from uniseg.errors import DataError, UserError, choices
from uniseg.fsio import atomic_dir


@dataclass(frozen=True)
class SplitLayout:
    images: str  # glob under the root
    label_from: str  # regex on the image path (relative, posix)
    label_to: str  # replacement giving the label path


def _cityscapes_like(image_dir: str, label_dir: str, suffix: str) -> dict[str, SplitLayout]:
    return {
        split: SplitLayout(
            f"{image_dir}/{folder}/*/*_leftImg8bit.png",
            rf"^{image_dir}/{folder}/(.+)_leftImg8bit\.png$",
            rf"{label_dir}/{folder}/\1_{suffix}.png",
        )
        for split, folder in (("train", "train"), ("val", "val"))
    }


LAYOUTS: dict[str, dict[str, SplitLayout]] = {
    "cityscapes": _cityscapes_like("leftImg8bit", "gtFine", "gtFine_labelIds"),
    "idd": _cityscapes_like(
        "leftImg8bit", "gtFine", "gtFine_labelids"
    ),  # ids 0-39 (createLabels.py --id-type id)
    "bdd": {
        split: SplitLayout(
            f"images/10k/{split}/*.jpg",
            rf"^images/10k/{split}/(.+)\.jpg$",
            rf"labels/sem_seg/masks/{split}/\1.png",
        )
        for split in ("train", "val")
    },
    "mapillary": {
        split: SplitLayout(
            f"{folder}/images/*.jpg", rf"^{folder}/images/(.+)\.jpg$", rf"{folder}/v1.2/labels/\1.png"
        )
        for split, folder in (("train", "training"), ("val", "validation"))
    },
    "kitti": {
        "val": SplitLayout("training/image_2/*.png", r"^training/image_2/(.+)$", r"training/semantic/\1")
    },
    "wilddash": {"val": SplitLayout("images/*.jpg", r"^images/(.+)\.jpg$", r"labels/\1_labelIds.png")},
    "camvid": {
        split: SplitLayout(
            "701_StillsRaw_full/*.png", r"^701_StillsRaw_full/(.+)\.png$", r"LabeledApproved_full/\1_L.png"
        )
        for split in ("train", "val", "test")
    },
}
# Which split of a test dataset is its unseen evaluation set (stored as `val` in the canonical layout).
EVAL_SPLIT = {"kitti": "val", "wilddash": "val", "camvid": "test"}


def _layout(name: str) -> dict[str, SplitLayout]:
    if name not in LAYOUTS:
        raise UserError(f"unknown dataset {name!r}; known datasets: {choices(LAYOUTS)}")
    return LAYOUTS[name]


def _split_list(root: Path, split: str) -> set[str] | None:
    path = root / "splits" / f"{split}.txt"
    if not path.is_file():
        return None
    stems = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            stems.add(Path(line.split()[0]).stem)
    return stems


def find_pairs(name: str, root: str | Path, split: str) -> list[tuple[str, Path, Path]]:
    """(key, image, label) of one split in the official layout, sorted by key. Missing folders, images
    without labels and labels without images are DataErrors naming what was expected."""
    root = Path(root)
    layouts = _layout(name)
    if not root.is_dir():
        raise DataError(f"{root}: dataset root not found ({taxonomy.dataset_info(name).title})")
    if split not in layouts:
        raise DataError(f"{name} has no split {split!r}; valid: {choices(layouts)}")
    lay = layouts[split]
    prefix = lay.images.split("*")[0]
    folder = root / prefix.rsplit("/", 1)[0] if "/" in prefix else root
    if not folder.is_dir():
        raise DataError(f"{root}: expected the folder {folder.relative_to(root)} ({name}'s official layout)")
    wanted = _split_list(root, split)
    pairs, keys, label_dirs = [], set(), set()
    for image in sorted(root.glob(lay.images)):
        if wanted is not None and image.stem not in wanted:
            continue
        label = root / re.sub(lay.label_from, lay.label_to, image.relative_to(root).as_posix())
        if not label.is_file():
            raise DataError(f"{image}: has no label file (expected {label.relative_to(root)})")
        key = re.sub(r"[^A-Za-z0-9_.-]", "_", image.stem.replace("_leftImg8bit", ""))
        if key in keys:
            raise DataError(f"{image}: duplicate key {key!r} in {name}/{split}")
        keys.add(key)
        label_dirs.add(label.parent)
        pairs.append((key, image, label))
    if wanted is not None and len(pairs) < len(wanted):
        missing = sorted(wanted - {p[1].stem for p in pairs})[:3]
        raise DataError(
            f"{root}/splits/{split}.txt lists images that are not there, e.g. {', '.join(missing)}"
        )
    if wanted is None:
        expected = {p[2] for p in pairs}
        tail = lay.label_to.rsplit("\\1", 1)[-1] or ".png"
        for d in sorted(label_dirs):
            for f in sorted(d.iterdir()):
                if f.name.endswith(tail) and f not in expected:
                    raise DataError(f"{f}: label without an image")
    return pairs


def _read(path: Path, what: str) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
        return img
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot be decoded as {what} ({exc})") from None


def convert_label(name: str, path: Path) -> np.ndarray:
    """uint8 [H, W] label-space indices (255 = ignore) from an official label file."""
    info = taxonomy.dataset_info(name)
    img = _read(path, "a label image")
    if info.encoding == "rgb":
        rgb = np.asarray(img.convert("RGB"), dtype=np.int64)
        colours, targets = taxonomy.colour_table(name)
        code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        table = {
            int(r) << 16 | int(g) << 8 | int(b): int(t) for (r, g, b), t in zip(colours, targets, strict=True)
        }
        values, inverse = np.unique(code, return_inverse=True)
        mapped = []
        for v in values.tolist():
            if v not in table:
                raise DataError(
                    f"{path}: colour {(v >> 16, (v >> 8) & 255, v & 255)} is not in the {name} label table"
                )
            mapped.append(table[v])
        return np.asarray(mapped, dtype=np.uint8)[inverse.reshape(code.shape)]
    if img.mode not in ("L", "P", "I;16", "I"):
        raise DataError(f"{path}: expected a single-channel label PNG of {name} ids, got mode {img.mode}")
    raw = np.asarray(img)
    if raw.max(initial=0) > 255:
        raise DataError(f"{path}: label value {int(raw.max())} is not in the {name} label table")
    lut = taxonomy.raw_lut(name)
    out = lut[raw.astype(np.int64)]
    if (out == taxonomy.UNKNOWN).any():
        value = int(raw[out == taxonomy.UNKNOWN][0])
        raise DataError(f"{path}: label value {value} is not in the {name} label table")
    return out.astype(np.uint8)


def _iter_split(
    name: str, root: Path, split: str, skip_corrupt: bool, skipped: list
) -> Iterator[tuple[str, Path, Image.Image, np.ndarray]]:
    for key, image_path, label_path in find_pairs(name, root, split):
        try:
            image = _read(image_path, "an image").convert("RGB")
            label = convert_label(name, label_path)
            if label.shape != (image.height, image.width):
                raise DataError(
                    f"{label_path}: label size {label.shape[::-1]} differs from image size {image.size}"
                )
        except DataError as exc:
            if not skip_corrupt:
                raise DataError(f"{exc} (set data.skip_corrupt: true to skip such samples)") from None
            skipped.append((str(image_path), str(exc)))
            continue
        yield key, image_path, image, label


def ingest(name: str, root: str | Path, out_dir: str | Path, skip_corrupt: bool = False) -> dict:
    """Convert a dataset from its official layout at `root` into the canonical layout at `out_dir`
    (atomically). Test datasets keep only their evaluation split, stored as `val`."""
    root = Path(root)
    info = taxonomy.dataset_info(name)
    splits = {EVAL_SPLIT[name]: "val"} if name in EVAL_SPLIT else {s: s for s in _layout(name)}
    skipped: list[tuple[str, str]] = []
    counts: dict[str, int] = {}
    with atomic_dir(out_dir) as tmp:
        for source, target in splits.items():
            folder = tmp / target
            folder.mkdir()
            n = 0
            for key, image_path, image, label in _iter_split(name, root, source, skip_corrupt, skipped):
                if image_path.suffix.lower() in (".jpg", ".jpeg"):
                    (folder / f"{key}.jpg").write_bytes(image_path.read_bytes())
                else:
                    image.save(folder / f"{key}.png", compress_level=1)
                Image.fromarray(label).save(folder / f"{key}.label.png", compress_level=1)
                n += 1
            if n == 0:
                raise DataError(f"{root}: the {source} split of {name} is empty")
            counts[target] = n
        write_meta(tmp, DatasetMeta(name, "real", list(info.classes), counts, dict(info.fallbacks)))
    return {"images": sum(counts.values()), "splits": counts, "skipped": skipped}


def inspect_dataset(name: str, root: str | Path, split: str = "val") -> dict:
    """Validate one split in the official layout: {"dataset", "split", "images", "pixels": {class: n,
    ..., "ignore": n}} (every class of the label space listed, in label-space order)."""
    info = taxonomy.dataset_info(name)
    counts = np.zeros(256, dtype=np.int64)
    n = 0
    for _, _, _, label in _iter_split(name, Path(root), split, False, []):
        counts += np.bincount(label.ravel(), minlength=256)
        n += 1
    if n == 0:
        raise DataError(f"{root}: the {split} split of {name} is empty")
    pixels = {c: int(counts[i]) for i, c in enumerate(info.classes)}
    pixels["ignore"] = int(counts[IGNORE])
    return {"dataset": name, "split": split, "images": n, "pixels": pixels}
