"""Adapters for the real datasets' official on-disk layouts and label encodings.

Each adapter is data (LAYOUTS): for every split, the folder its images are in, a regex that an image's
path under that folder matches (its named groups give the label's path and the sample's key) and the
same pattern written for people. Label values are converted with the dataset's taxonomy table
(uniseg/taxonomy): `ids` tables map raw ids, `rgb` tables map colours (CamVid). Every raw value maps to a
label-space index or to ignore (255); an unknown value is an error that names the file and the value.

WildDash 2's labels are COCO panoptic: a PNG whose colour is a segment id (R + 256 G + 256² B) and the
archive's panoptic.json, which gives each segment's category, a WD2 label id (`PANOPTIC`; the facts from
the official wilddash_scripts pano2sem.py, written anew here: pixels of no segment are 0, unlabelled).

Which images make up a split: the user's list, else the standard (MSeg) list or the seeded selection,
else all (splits/).
`ingest` writes an index of the user's files (index.py), not a copy; the shard stage reads them in place.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from uniseg import IGNORE, taxonomy
from uniseg.datasets.index import write_index
from uniseg.datasets.layout import DatasetMeta, write_meta
from uniseg.datasets.panoptic import panoptic_ids
from uniseg.datasets.splits import select, split_list
from uniseg.errors import DataError, UserError, choices
from uniseg.fsio import atomic_dir


@dataclass(frozen=True)
class SplitLayout:
    folder: str  # the images are under <root>/<folder>
    image: str  # regex for an image's path relative to `folder` (posix); its groups fill label and key
    label: str  # the label's path under the root (str.format of the groups)
    shows: str  # the image pattern for people
    key: str = "{stem}"  # the sample's key (str.format of the groups; made safe as a file name)


def _cityscapes(split: str) -> SplitLayout:
    return SplitLayout(
        f"leftImg8bit/{split}",
        r"(?P<city>[^/]+)/(?P<stem>[^/]+)_leftImg8bit\.png",
        f"gtFine/{split}/{{city}}/{{stem}}_gtFine_labelIds.png",
        "<city>/<stem>_leftImg8bit.png",
    )


def _idd(split: str) -> SplitLayout:
    # Frame numbers repeat across sequences, so the key keeps the sequence. Copies in circulation have
    # .jpg as well as .png images. Labels: ids 0-39 (public-code createLabels.py --id-type id).
    return SplitLayout(
        f"leftImg8bit/{split}",
        r"(?P<seq>[^/]+)/(?P<frame>[^/]+)_leftImg8bit\.(?:png|jpg)",
        f"gtFine/{split}/{{seq}}/{{frame}}_gtFine_labelids.png",
        "<seq>/<frame>_leftImg8bit.png or .jpg",
        key="{seq}_{frame}",
    )


LAYOUTS: dict[str, dict[str, SplitLayout]] = {
    "cityscapes": {s: _cityscapes(s) for s in ("train", "val")},
    "idd": {s: _idd(s) for s in ("train", "val")},
    "bdd": {
        s: SplitLayout(
            f"images/10k/{s}", r"(?P<stem>[^/]+)\.jpg", f"labels/sem_seg/masks/{s}/{{stem}}.png", "<id>.jpg"
        )
        for s in ("train", "val")
    },
    "mapillary": {
        s: SplitLayout(f"{f}/images", r"(?P<stem>[^/]+)\.jpg", f"{f}/v1.2/labels/{{stem}}.png", "<key>.jpg")
        for s, f in (("train", "training"), ("val", "validation"))
    },
    "kitti": {
        "val": SplitLayout(
            "training/image_2", r"(?P<stem>[^/]+)\.png", "training/semantic/{stem}.png", "<id>_10.png"
        )
    },
    # wd_val_01.zip: images and labels side by side; image stems end in digits (au0000_100000).
    "wilddash": {
        "val": SplitLayout(
            "wd_val_01",
            r"(?P<stem>[^/]+_\d+)\.(?:png|jpg)",
            "wd_val_01/{stem}_labelIds.png",
            "<name>_<digits>.png or .jpg",
        )
    },
    # wd_public_v2p0.zip (the final public ground truth): images/, panoptic/ and panoptic.json side by side.
    "wilddash2": {
        "val": SplitLayout("images", r"(?P<stem>[^/]+)\.jpg", "panoptic/{stem}.png", "images/<name>.jpg")
    },
    # One folder for every split: a split is its list (the shipped val list, or splits/<split>.txt).
    "camvid": {
        s: SplitLayout(
            "701_StillsRaw_full", r"(?P<stem>[^/]+)\.png", "LabeledApproved_full/{stem}_L.png", "<stem>.png"
        )
        for s in ("train", "val", "test")
    },
}
# Which split of a test dataset is its unseen evaluation set (stored as `val`): the val lists, as MSeg.
EVAL_SPLIT = {"kitti": "val", "wilddash": "val", "camvid": "val", "wilddash2": "val"}
# Datasets whose labels are COCO panoptic PNGs with a segments file (relative to the dataset root).
PANOPTIC = {"wilddash2": "panoptic.json"}


def _layout(name: str) -> dict[str, SplitLayout]:
    if name not in LAYOUTS:
        raise UserError(f"unknown dataset {name!r}; known datasets: {choices(LAYOUTS)}")
    return LAYOUTS[name]


def _safe(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", key)


def _entry_key(lay: SplitLayout, entry: str) -> str:
    """The key of a list entry: by the layout's pattern when the entry's path ends in it (MSeg's lists),
    else its file stem (a bare stem or a path in another layout, e.g. MSeg's `seg/images/val/<id>.jpg`)."""
    match = re.search(rf"(?:^|/){lay.image}$", entry)
    if match:
        return _safe(lay.key.format(**match.groupdict()))
    return _safe(PurePosixPath(entry).stem.replace("_leftImg8bit", ""))


def find_pairs(name: str, root: str | Path, split: str) -> list[tuple[str, Path, Path]]:
    """(key, image, label) of one split in the official layout, sorted by key. Missing folders, images
    without labels, labels without images and list entries without images are DataErrors naming what
    was expected."""
    root = Path(root)
    layouts = _layout(name)
    if not root.is_dir():
        raise DataError(f"{root}: dataset root not found ({taxonomy.dataset_info(name).title})")
    if split not in layouts:
        raise DataError(f"{name} has no split {split!r}; valid: {choices(layouts)}")
    lay = layouts[split]
    folder = root / lay.folder
    if not folder.is_dir():
        raise DataError(f"{root}: expected the folder {lay.folder} ({name}'s official layout)")
    pattern = re.compile(lay.image)
    found: dict[str, tuple[Path, Path]] = {}
    for image in sorted(p for p in folder.rglob("*") if p.is_file()):
        match = pattern.fullmatch(image.relative_to(folder).as_posix())
        if not match:
            continue
        key = _safe(lay.key.format(**match.groupdict()))
        if key in found:
            raise DataError(f"{image}: duplicate key {key!r} in {name}/{split} (also {found[key][0]})")
        found[key] = (image, root / lay.label.format(**match.groupdict()))
    chosen = split_list(name, split, root)
    if chosen is not None:
        keys = {number: _entry_key(lay, entry) for number, entry in chosen.entries}
        missing = [(number, entry) for number, entry in chosen.entries if keys[number] not in found]
        if missing:
            number, entry = missing[0]
            raise DataError(
                f"{chosen.path}:{number}: {entry} is not in {folder} (pattern {lay.shows}); "
                f"{len(missing)} of {len(chosen.entries)} listed images are missing"
            )
        found = {k: found[k] for k in set(keys.values())}
    found_all = dict(found)
    if chosen is None:
        found = {k: found[k] for k in select(name, split, list(found))}
    if not found:
        listed = f" listed in {chosen.path}" if chosen is not None else ""
        raise DataError(
            f"the {split} split of {name} is empty: no file{listed} under {folder} matches {lay.shows}"
        )
    pairs = []
    for key, (image, label) in sorted(found.items()):
        if not label.is_file():
            raise DataError(f"{image}: has no label file (expected {label.relative_to(root)})")
        pairs.append((key, image, label))
    if chosen is None and len(pairs) == len(found_all):  # the whole layout: every label has its image
        _check_no_orphan_labels(root, lay, {p[2] for p in pairs})
    return pairs


def _check_no_orphan_labels(root: Path, lay: SplitLayout, expected: set[Path]) -> None:
    folder = root / lay.label.split("{", 1)[0].rsplit("/", 1)[0]
    tail = lay.label.rsplit("}", 1)[-1]
    for f in sorted(folder.rglob(f"*{tail}")):
        if f not in expected:
            raise DataError(f"{f}: label without an image")


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
    if name in PANOPTIC:
        raw = panoptic_ids(path, img, path.parent.parent / PANOPTIC[name])
    elif img.mode not in ("L", "P", "I;16", "I"):
        raise DataError(f"{path}: expected a single-channel label PNG of {name} ids, got mode {img.mode}")
    else:
        raw = np.asarray(img)
    if raw.max(initial=0) > 255:
        raise DataError(f"{path}: label value {int(raw.max())} is not in the {name} label table")
    lut = taxonomy.raw_lut(name)
    out = lut[raw.astype(np.int64)]
    if (out == taxonomy.UNKNOWN).any():
        value = int(raw[out == taxonomy.UNKNOWN][0])
        raise DataError(f"{path}: label value {value} is not in the {name} label table")
    return out.astype(np.uint8)


def read_sample(name: str, image_path: Path, label_path: Path) -> tuple[Image.Image, np.ndarray]:
    """The RGB image and its converted label; DataError if either cannot be read or their sizes differ."""
    image = _read(image_path, "an image").convert("RGB")
    label = convert_label(name, label_path)
    if label.shape != (image.height, image.width):
        raise DataError(f"{label_path}: label size {label.shape[::-1]} differs from image size {image.size}")
    return image, label


def ingest(name: str, root: str | Path, out_dir: str | Path) -> dict:
    """Index a dataset in its official layout at `root` into `out_dir` (atomically): dataset.json and
    index.parquet, no copies. Test datasets keep only their evaluation split, stored as `val`. Files are
    checked to exist and pair up here; they are decoded (and corrupt ones reported) by the shard stage."""
    root = Path(root)
    info = taxonomy.dataset_info(name)
    splits = {EVAL_SPLIT[name]: "val"} if name in EVAL_SPLIT else {s: s for s in _layout(name)}
    samples = {target: find_pairs(name, root, source) for source, target in splits.items()}
    counts = {split: len(pairs) for split, pairs in samples.items()}
    with atomic_dir(out_dir) as tmp:
        write_index(tmp, root, samples)
        write_meta(tmp, DatasetMeta(name, "real", list(info.classes), counts, dict(info.fallbacks)))
    return {"images": sum(counts.values()), "splits": counts}


def _iter_split(name: str, root: Path, split: str) -> Iterator[np.ndarray]:
    for _, image_path, label_path in find_pairs(name, root, split):
        yield read_sample(name, image_path, label_path)[1]


def inspect_dataset(name: str, root: str | Path, split: str = "val") -> dict:
    """Validate one split in the official layout: {"dataset", "split", "images", "pixels": {class: n,
    ..., "ignore": n}} (every class of the label space listed, in label-space order)."""
    info = taxonomy.dataset_info(name)
    counts = np.zeros(256, dtype=np.int64)
    n = 0
    for label in _iter_split(name, Path(root), split):
        counts += np.bincount(label.ravel(), minlength=256)
        n += 1
    pixels = {c: int(counts[i]) for i, c in enumerate(info.classes)}
    pixels["ignore"] = int(counts[IGNORE])
    return {"dataset": name, "split": split, "images": n, "pixels": pixels}
