"""A small corpus of the eight real datasets in their official layouts and label encodings, for tests.

Each dataset gets a few road scenes at reduced resolution, drawn from eight scene classes and written
with the raw values of its own official definition (chosen here from the upstream tables, not from
uniseg's): Cityscapes / KITTI / WildDash labelIds PNGs, BDD trainId PNGs with JPEG images, IDD id PNGs
(public-code createLabels.py --id-type id) with .png and .jpg images, Mapillary palette PNGs whose pixel
values are class indices, CamVid RGB colour labels. Cityscapes also gets its instanceIds / color /
polygons files beside the labels, as in gtFine. WildDash 2 gets the public archive's layout (images/*.jpg,
panoptic/*.png, panoptic.json): COCO panoptic masks whose segments carry WD2 label ids (the 81-label list
of the official policy), with lane markings, zebra crossings, curbs and pickups among them.

The test sets hold exactly the images of the evaluation lists that ship with uniseg (KITTI val 50,
WildDash val 70, CamVid val 101) plus two images outside them; the training sets hold a few train and
val images and their own `splits/val.txt` (the shipped val lists name 500-2000 images).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

SCENE = ("void", "road", "sidewalk", "building", "vegetation", "sky", "car", "person")
COLOURS = np.array(
    [(0, 0, 0), (90, 90, 95), (150, 140, 130), (120, 60, 40), (40, 130, 40), (110, 160, 230), (200, 30, 30), (230, 200, 60)],
    dtype=np.int64,
)  # fmt: skip

# Scene class -> raw value of each dataset's official encoding (None: that dataset's unlabelled value).
RAW = {
    # cityscapesScripts labels.py labelIds: 0 unlabeled, 7 road, 8 sidewalk, 11 building, 21 vegetation,
    # 23 sky, 24 person, 26 car.
    "cityscapes": (0, 7, 8, 11, 21, 23, 26, 24),
    # bdd100k label.py trainIds (the Cityscapes trainId order), 255 = unlabelled.
    "bdd": (255, 0, 1, 2, 8, 10, 13, 11),
    # AutoNUE anue_labels.py ids: 35 unlabeled, 0 road, 3 sidewalk, 29 building, 32 vegetation, 33 sky,
    # 12 car, 6 person.
    "idd": (35, 0, 3, 29, 32, 33, 12, 6),
    # Mapillary Vistas v1.2 config.json indices: 65 Unlabeled, 13 Road, 15 Sidewalk, 17 Building,
    # 30 Vegetation, 27 Sky, 55 Car, 19 Person.
    "mapillary": (65, 13, 15, 17, 30, 27, 55, 19),
    # mseg-api camvid-32 colours: Void, Road, Sidewalk, Building, Tree, Sky, Car, Pedestrian.
    "camvid": ((0, 0, 0), (128, 64, 128), (0, 0, 192), (128, 0, 0), (128, 128, 0), (128, 128, 128), (64, 0, 128), (64, 64, 0)),
}  # fmt: skip
RAW["kitti"] = RAW["wilddash"] = RAW["cityscapes"]
# WildDash 2 label ids (wd2_unified_label_policy.json, per_ds.wd2): 0 unlabeled, 7 road, 8 sidewalk,
# 11 building, 21 vegetation, 23 sky, 26 car, 24 person; besides the scene, stripes of 38 roadmarking,
# 76 crosswalkzebra, 52 curb and 34 pickup are painted (write_sample).
RAW["wilddash2"] = (0, 7, 8, 11, 21, 23, 26, 24)
WD2_EXTRA = (38, 76, 52, 34)

SIZE = {  # (width, height), the official aspect ratios
    "cityscapes": (128, 64),
    "bdd": (128, 72),
    "idd": (128, 72),
    "mapillary": (120, 90),
    "kitti": (160, 48),
    "wilddash": (128, 72),
    "camvid": (120, 90),
    "wilddash2": (128, 72),
}
TRAINING = ("cityscapes", "bdd", "idd", "mapillary")
TESTING = ("kitti", "wilddash", "camvid", "wilddash2")


def scene(seed: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [H, W, 3] image, uint8 [H, W] scene-class map) of a simple street: sky, buildings and
    trees, road and sidewalk, cars and people."""
    w, h = size
    rng = np.random.default_rng(seed)
    cls = np.zeros((h, w), dtype=np.uint8)
    horizon = int(h * rng.uniform(0.35, 0.5))
    cls[:horizon] = SCENE.index("sky")
    x = 0
    while x < w:
        bw = int(rng.integers(w // 8, w // 3))
        top = int(rng.integers(h // 10, horizon))
        cls[top:horizon, x : x + bw] = SCENE.index(rng.choice(["building", "vegetation"]))
        x += bw
    cls[horizon:] = SCENE.index("road")
    kerb = horizon + (h - horizon) // 3
    cls[horizon:kerb, : w // 4] = SCENE.index("sidewalk")
    for _ in range(int(rng.integers(1, 4))):
        cx, cw = int(rng.integers(0, w - 8)), int(rng.integers(6, w // 4))
        cy = int(rng.integers(horizon, h - 4))
        cls[max(0, cy - cw // 3) : cy, cx : cx + cw] = SCENE.index("car")
    px = int(rng.integers(0, w - 4))
    cls[max(0, horizon - h // 6) : horizon + h // 8, px : px + max(2, w // 40)] = SCENE.index("person")
    cls[-2:, :3] = SCENE.index("void")
    image = COLOURS[cls] + rng.integers(-12, 13, (h, w, 3))
    return np.clip(image, 0, 255).astype(np.uint8), cls


def _save(path: Path, img: Image.Image, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kwargs)


def write_sample(name: str, root: Path, image_rel: str, label_rel: str, seed: int) -> None:
    """One image and its label in `name`'s encoding at the given paths under `root`."""
    image, cls = scene(seed, SIZE[name] if name != "mapillary" else ((120, 90), (128, 96))[seed % 2])
    suffix = Path(image_rel).suffix
    _save(root / image_rel, Image.fromarray(image), **({"quality": 90} if suffix == ".jpg" else {}))
    raw = RAW[name]
    if name == "wilddash2":
        ids = np.asarray(raw, dtype=np.int64)[cls]
        for row, value in zip((-12, -10, -8, -6), WD2_EXTRA, strict=True):  # thin bands near the bottom
            ids[row, (seed % 5) * 8 : (seed % 5) * 8 + 40] = value
        _write_panoptic(root, Path(label_rel).name, ids)
        return
    if name == "camvid":
        _save(root / label_rel, Image.fromarray(np.asarray(raw, dtype=np.uint8)[cls]))
        return
    values = np.asarray(raw, dtype=np.uint8)[cls]
    label = Image.fromarray(values)
    if name == "mapillary":  # palette PNG: the pixel values are the class indices
        label = Image.fromarray(values, mode="P")
        label.putpalette([v for i in range(256) for v in (i * 37 % 256, i * 91 % 256, i * 53 % 256)])
    _save(root / label_rel, label)
    if name == "cityscapes":  # gtFine keeps instance ids, colours and polygons beside the labelIds
        base = label_rel.removesuffix("_labelIds.png")
        instances = values.astype(np.int32) * 1000 + (cls == SCENE.index("car"))
        _save(root / f"{base}_instanceIds.png", Image.fromarray(instances.astype(np.uint16)))
        _save(root / f"{base}_color.png", Image.fromarray(COLOURS[cls].astype(np.uint8)))
        (root / f"{base}_polygons.json").write_text(
            json.dumps({"imgHeight": 64, "imgWidth": 128, "objects": []})
        )


def _write_panoptic(root: Path, file_name: str, ids: np.ndarray) -> None:
    """A COCO panoptic mask (segment id = R + 256 G + 256^2 B; one segment per label id, none on 0) and
    its entry in root/panoptic.json."""
    segment = np.where(ids > 0, ids * 1000 + 7, 0)
    rgb = np.stack([segment % 256, segment // 256 % 256, segment // 65536], -1).astype(np.uint8)
    _save(root / "panoptic" / file_name, Image.fromarray(rgb))
    path = root / "panoptic.json"
    data = (
        json.loads(path.read_text())
        if path.is_file()
        else {"images": [], "annotations": [], "categories": []}
    )
    data["annotations"].append(
        {
            "file_name": file_name,
            "image_id": Path(file_name).stem,
            "segments_info": [{"id": int(v) * 1000 + 7, "category_id": int(v)} for v in np.unique(ids) if v],
        }
    )
    path.write_text(json.dumps(data))


def shipped_entries(name: str) -> list[str]:
    """Column 1 of the val list that ships with uniseg for `name` (image paths under the dataset root)."""
    from uniseg.datasets.splits import read_list, shipped

    return [entry for _, entry in read_list(shipped(name, "val")).entries]


def _training_paths(name: str, split: str, k: int) -> tuple[str, str]:
    if name == "cityscapes":
        city = ("aachen", "bochum")[k % 2] if split == "train" else "frankfurt"
        stem = f"{city}_{k:06d}_000019"
        return (
            f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png",
            f"gtFine/{split}/{city}/{stem}_gtFine_labelIds.png",
        )
    if name == "bdd":
        return (
            f"images/10k/{split}/{split[0]}{k:04d}-0000.jpg",
            f"labels/sem_seg/masks/{split}/{split[0]}{k:04d}-0000.png",
        )
    if name == "idd":  # frame numbers repeat across sequences; .jpg and .png images both circulate
        seq, frame = str(k % 2), f"{k // 2:06d}"
        ext = "jpg" if k % 3 == 0 else "png"
        return (
            f"leftImg8bit/{split}/{seq}/{frame}_leftImg8bit.{ext}",
            f"gtFine/{split}/{seq}/{frame}_gtFine_labelids.png",
        )
    folder = {"train": "training", "val": "validation"}[split]
    return f"{folder}/images/-m{split}{k:03d}.jpg", f"{folder}/v1.2/labels/-m{split}{k:03d}.png"  # fmt: skip


def _test_label(name: str, image_rel: str) -> str:
    stem = Path(image_rel).stem
    return {
        "kitti": f"training/semantic/{stem}.png",
        "wilddash": f"wd_val_01/{stem}_labelIds.png",
        "camvid": f"LabeledApproved_full/{stem}_L.png",
        "wilddash2": f"panoptic/{stem}.png",
    }[name]


EXTRA = {  # images outside the shipped lists: the lists must select
    "kitti": ["training/image_2/000058_10.png", "training/image_2/000199_10.png"],
    "wilddash": ["wd_val_01/zz0000_100000.png", "wd_val_01/zz0001_100000.png"],
    "camvid": ["701_StillsRaw_full/0001TP_006690.png", "701_StillsRaw_full/0006R0_f00930.png"],
}


def make_dataset(name: str, root: Path, train: int = 6, val: int = 4, listed: int = 3) -> dict[str, int]:
    """Write dataset `name` under `root` (its dataset folder); returns the expected split sizes."""
    root = Path(root)
    if name == "wilddash2":  # no shipped list: every image (fewer than the seeded selection keeps)
        for k in range(6):
            image_rel = f"images/wd2_{k:04d}_100000.jpg"
            write_sample(name, root, image_rel, _test_label(name, image_rel), seed=2000 + k)
        return {"val": 6}
    if name in TESTING:
        entries = shipped_entries(name)
        for k, image_rel in enumerate(entries + EXTRA[name]):
            write_sample(name, root, image_rel, _test_label(name, image_rel), seed=1000 + k)
        return {"val": len(entries)}
    seed = 0
    for split, n in (("train", train), ("val", val)):
        rows = []
        for k in range(n):
            image_rel, label_rel = _training_paths(name, split, k)
            write_sample(name, root, image_rel, label_rel, seed=seed)
            rows.append(f"{image_rel} {label_rel}")
            seed += 1
        if split == "val":  # the shipped val list names hundreds of images; this copy lists its own
            (root / "splits").mkdir(parents=True, exist_ok=True)
            (root / "splits" / "val.txt").write_text("\n".join(rows[:listed]) + "\n")
    return {"train": train, "val": listed}


def make_corpus(root: Path, datasets=TRAINING + TESTING) -> dict[str, dict[str, int]]:
    """All datasets under `root`/<name>/; returns {name: expected split sizes}."""
    return {name: make_dataset(name, Path(root) / name) for name in datasets}
