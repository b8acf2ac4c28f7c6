"""Real-dataset adapters on tiny fixtures in each dataset's official layout and encoding, the index
the download stage writes, the shipped evaluation lists, `uniseg inspect`, and the downloader against a
local HTTP server."""

import functools
import hashlib
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import real_corpus
from PIL import Image

from uniseg import taxonomy
from uniseg.datasets.download import fetch, locate, prepare, safe_extract
from uniseg.datasets.index import INDEX, read_index
from uniseg.datasets.layout import read_meta
from uniseg.datasets.real import find_pairs, ingest, inspect_dataset
from uniseg.datasets.splits import read_list, shipped
from uniseg.errors import DataError
from uniseg.shards.packing import write_shards

# Raw values chosen independently of uniseg's tables, from the official definitions.
RAW = {
    "cityscapes": {7: "road", 26: "car", 23: "sky", 0: None},  # labelIds; 0 unlabeled
    "kitti": {7: "road", 26: "car", 23: "sky", 0: None},
    "wilddash": {7: "road", 26: "car", 23: "sky", 0: None},
    "bdd": {0: "road", 13: "car", 10: "sky", 255: None},  # trainIds
    "idd": {0: "road", 12: "car", 33: "sky", 35: None},  # ids (mapped to level 3 by the table)
    "mapillary": {13: "road", 55: "car", 27: "sky", 65: None},  # v1.2 indices; 65 unlabeled
}
CAMVID = {
    (128, 64, 128): "road",
    (64, 0, 128): "car",
    (128, 128, 128): "sky",
    (0, 0, 0): None,
    (64, 128, 64): None,
}


def _raw_label(values, shape=(12, 16), seed=0):
    rng = np.random.default_rng(seed)
    return np.asarray(values)[rng.integers(0, len(values), shape)]


def _expected(raw, mapping, classes):
    counts = {c: 0 for c in classes}
    counts["ignore"] = 0
    for v, n in zip(*np.unique(raw, return_counts=True), strict=True):
        name = mapping[v.item()] if not isinstance(v, tuple) else mapping[v]
        counts[name or "ignore"] += int(n)
    return counts


def _save_image(path, size=(16, 12)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 90, 90)).save(path)


def _save_label(path, arr, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P":
        img = Image.fromarray(arr.astype(np.uint8), mode="P")
        img.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
        img.save(path)
    else:
        Image.fromarray(arr.astype(np.uint8)).save(path)


def make_fixture(name, root, split="val", n=2):
    """Write n samples of `split` in the official layout; return the raw label arrays. A val split gets
    its own `splits/val.txt` naming them (the shipped val lists name hundreds of images)."""
    raws, images = [], []
    for k in range(n):
        if name == "camvid":
            idx = _raw_label(list(range(len(CAMVID))), seed=k)
            colours = np.array(list(CAMVID))
            rgb = colours[idx].astype(np.uint8)
            stem = f"0001TP_00{k}"
            _save_image(root / "701_StillsRaw_full" / f"{stem}.png")
            images.append(f"701_StillsRaw_full/{stem}.png")
            (root / "LabeledApproved_full").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).save(root / "LabeledApproved_full" / f"{stem}_L.png")
            raws.append([tuple(c) for c in rgb.reshape(-1, 3).tolist()])
            continue
        raw = _raw_label(list(RAW[name]), seed=k)
        raws.append(raw.ravel().tolist())
        if name in ("cityscapes", "idd"):
            stem = f"city_{k:06d}_000019"
            _save_image(root / "leftImg8bit" / split / "city" / f"{stem}_leftImg8bit.png")
            images.append(f"leftImg8bit/{split}/city/{stem}_leftImg8bit.png")
            suffix = "gtFine_labelIds" if name == "cityscapes" else "gtFine_labelids"
            _save_label(root / "gtFine" / split / "city" / f"{stem}_{suffix}.png", raw)
            if name == "cityscapes":  # 16-bit instance ids and colour PNGs sit beside the labels
                Image.fromarray((raw.astype(np.int32) * 1000 + 1).astype(np.uint16)).save(
                    root / "gtFine" / split / "city" / f"{stem}_gtFine_instanceIds.png"
                )
                Image.new("RGB", (16, 12)).save(root / "gtFine" / split / "city" / f"{stem}_gtFine_color.png")
        elif name == "bdd":
            _save_image(root / "images/10k" / split / f"b{k}.jpg")
            _save_label(root / "labels/sem_seg/masks" / split / f"b{k}.png", raw)
            images.append(f"images/10k/{split}/b{k}.jpg")
        elif name == "mapillary":
            folder = {"train": "training", "val": "validation"}[split]
            _save_image(root / folder / "images" / f"m{k}.jpg")
            _save_label(root / folder / "v1.2/labels" / f"m{k}.png", raw, mode="P")
            images.append(f"{folder}/images/m{k}.jpg")
        elif name == "kitti":
            _save_image(root / "training/image_2" / f"{k:06d}_10.png")
            _save_label(root / "training/semantic" / f"{k:06d}_10.png", raw)
            images.append(f"training/image_2/{k:06d}_10.png")
        elif name == "wilddash":  # wd_val_01.zip: images and labelIds side by side
            _save_image(root / "wd_val_01" / f"xx{k:04d}_100000.png")
            _save_label(root / "wd_val_01" / f"xx{k:04d}_100000_labelIds.png", raw)
            images.append(f"wd_val_01/xx{k:04d}_100000.png")
    if split == "val":
        (root / "splits").mkdir(parents=True, exist_ok=True)
        (root / "splits" / "val.txt").write_text("".join(f"{i}\n" for i in images))
    return raws


@pytest.mark.parametrize("name", ["cityscapes", "bdd", "idd", "mapillary", "kitti", "wilddash", "camvid"])
def test_adapter_and_inspect_count_pixels_like_an_independent_computation(name, tmp_path):
    split = "val"
    raws = make_fixture(name, tmp_path / name, split)
    classes = taxonomy.label_space(name)
    mapping = CAMVID if name == "camvid" else RAW[name]
    flat = [v for raw in raws for v in raw]
    expected = {c: 0 for c in classes} | {"ignore": 0}
    for v in flat:
        expected[mapping[v] or "ignore"] += 1
    result = inspect_dataset(name, tmp_path / name, split)
    assert result["images"] == 2 and result["dataset"] == name
    assert result["pixels"] == expected
    train_set = taxonomy.dataset_info(name).role == "train"
    if train_set:
        make_fixture(name, tmp_path / name, "train")
    out = ingest(name, tmp_path / name, tmp_path / "out")
    assert out["splits"] == ({"train": 2, "val": 2} if train_set else {"val": 2})
    meta = read_meta(tmp_path / "out")
    assert meta.classes == classes and meta.source == "real"
    write_shards(tmp_path / "out", tmp_path / "shards", 12, progress=False)  # 12: the fixtures' size
    manifest = pd.read_parquet(tmp_path / "shards" / "manifest.parquet")
    pixels = np.sum(manifest[manifest["split"] == split]["pixels"].tolist(), axis=0)
    assert dict(zip([*classes, "ignore"], pixels.tolist(), strict=True)) == expected, (
        "shards hold the same labels"
    )


def test_cli_inspect_prints_json(tmp_path):
    make_fixture("kitti", tmp_path / "kitti")
    out = subprocess.run(
        [sys.executable, "-m", "uniseg.cli", "inspect", "kitti", "--root", str(tmp_path / "kitti"), "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    data = json.loads(out.stdout)
    assert data["dataset"] == "kitti" and data["images"] == 2 and "road" in data["pixels"]


def test_cityscapes_table_matches_the_official_package():
    labels = pytest.importorskip("cityscapesscripts.helpers.labels")
    info = taxonomy.dataset_info("cityscapes")
    ours = {int(r.value): r.name for r in info.rows}
    for label in labels.labels:
        if label.id < 0:
            continue
        expected = None if label.ignoreInEval else label.name
        assert ours[label.id] == expected, label


def _index_and_shard(root, out):
    ingest("cityscapes", root, out / "raw")
    write_shards(out / "raw", out / "shards", 12, progress=False)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("missing root", "dataset root not found"),
        ("wrong layout", "expected the folder leftImg8bit/train"),
        ("image without label", "has no label file"),
        ("label without image", "label without an image"),
        ("truncated image", "bochum_000001_000019_leftImg8bit.png: cannot be decoded"),
        ("unknown value", "label value 99 is not in the cityscapes label table"),
        ("size mismatch", "differs from image size"),
        ("listed image missing", r"splits/val.txt:1: leftImg8bit/val/frankfurt/frankfurt_000000_000019"),
        ("empty split", r"train split of cityscapes is empty: no file under .*leftImg8bit/train matches"),
    ],
)
def test_bad_real_data_is_one_clear_error_and_no_output(tmp_path, damage, message):
    """Layout problems fail the download stage (indexing), undecodable files and bad values the shard
    stage (which reads the files); both name the file and leave no output."""
    root = tmp_path / "cityscapes"
    real_corpus.make_dataset("cityscapes", root, train=3, val=2, listed=2)
    train = root / "leftImg8bit/train/bochum/bochum_000001_000019_leftImg8bit.png"
    train_label = root / "gtFine/train/bochum/bochum_000001_000019_gtFine_labelIds.png"
    if damage == "missing root":
        root = tmp_path / "nowhere"
    elif damage == "wrong layout":
        (root / "leftImg8bit/train").rename(root / "leftImg8bit/training")
    elif damage == "image without label":
        train_label.unlink()
    elif damage == "label without image":
        train.unlink()
    elif damage == "truncated image":
        train.write_bytes(train.read_bytes()[:40])
    elif damage == "unknown value":
        _save_label(train_label, np.full((64, 128), 99))
    elif damage == "size mismatch":
        _save_label(train_label, np.full((5, 5), 7))
    elif damage == "listed image missing":
        next((root / "leftImg8bit/val").rglob("*_000000_000019_leftImg8bit.png")).unlink()
    elif damage == "empty split":
        for f in (root / "leftImg8bit/train").rglob("*.png"):
            f.unlink()
    with pytest.raises(DataError, match=message) as err:
        _index_and_shard(root, tmp_path / "out")
    assert "\n" not in str(err.value)
    out = tmp_path / "out"
    left = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert left in ([], ["raw"]), f"no shards and no temporary left behind: {left}"
    if message.startswith(("label value", "differs", "bochum")):
        assert left == ["raw"], "decoding is the shard stage's work; indexing passed"


def test_split_lists_select_the_evaluation_images(tmp_path):
    make_fixture("camvid", tmp_path / "camvid", "test", n=3)
    (tmp_path / "camvid/splits").mkdir()
    (tmp_path / "camvid/splits/test.txt").write_text(
        "701_StillsRaw_full/0001TP_001.png LabeledApproved_full/x.png\n"
    )
    assert [k for k, _, _ in find_pairs("camvid", tmp_path / "camvid", "test")] == ["0001TP_001"]


# --- split lists ---------------------------------------------------------------------------------

# MSeg's val lists (mseg-api mseg/dataset_lists/<name>/list/val.txt): what its zero-shot evaluation reads.
SHIPPED = {
    "kitti": 50,
    "wilddash": 70,
    "camvid": 101,
    "cityscapes": 500,
    "bdd": 1000,
    "idd": 981,
    "mapillary": 2000,
}


@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_lists_are_the_upstream_files_with_their_counts(name):
    path = shipped(name, "val")
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    header = [line.decode() for line in lines if line.startswith(b"#")]
    body = raw[sum(len(h) + 1 for h in header) :]
    assert raw.startswith("".join(h + "\n" for h in header).encode()), "the header comes first"
    meta = " ".join(header)
    assert "github.com/mseg-dataset/mseg-api" in meta and "/list/val.txt" in meta
    assert "commit: fd93c4e325392bbdef766de35304973ee70b3f57" in meta
    blob = re.search(r"git blob: ([0-9a-f]{40})", meta).group(1)
    assert hashlib.sha1(b"blob %d\0" % len(body) + body).hexdigest() == blob, "entries byte for byte"
    assert f"entries: {SHIPPED[name]}," in meta
    assert len(read_list(path).entries) == SHIPPED[name] == len([x for x in body.splitlines() if x.strip()])


@pytest.mark.parametrize("name", ["kitti", "wilddash", "camvid"])
def test_test_sets_are_their_shipped_val_lists_by_default(name, tmp_path):
    root = tmp_path / name
    expected = real_corpus.make_dataset(name, root)  # the listed images and two more
    keys = [k for k, _, _ in find_pairs(name, root, "val")]
    listed = {Path(e).stem for e in real_corpus.shipped_entries(name)}
    assert len(keys) == expected["val"] == SHIPPED[name] and set(keys) == listed
    assert not {Path(e).stem for e in real_corpus.EXTRA[name]} & set(keys)


def test_a_listed_image_that_is_missing_is_named(tmp_path):
    root = tmp_path / "kitti"
    real_corpus.make_dataset("kitti", root)
    (root / "training/image_2/000026_10.png").unlink()  # the second entry of the shipped list
    with pytest.raises(
        DataError, match=r"kitti-val.txt:\d+: training/image_2/000026_10.png is not in .*1 of 50"
    ):
        find_pairs("kitti", root, "val")


def test_a_users_list_overrides_the_shipped_one(tmp_path):
    root = tmp_path / "kitti"
    real_corpus.make_dataset("kitti", root)
    (root / "splits").mkdir()
    (root / "splits/val.txt").write_text("# mine\ntraining/image_2/000058_10.png x\n000052_10\n")
    assert [k for k, _, _ in find_pairs("kitti", root, "val")] == ["000052_10", "000058_10"]


def test_mseg_entries_find_the_official_files_by_stem(tmp_path):
    """MSeg's BDD list names `seg/images/val/<id>.jpg`, its WildDash list `.png` images; the official
    layouts are `images/10k/val/<id>.jpg` and, in some copies, `.jpg` WildDash images."""
    bdd = tmp_path / "bdd"
    real_corpus.write_sample(
        "bdd",
        bdd,
        "images/10k/val/7d06fefd-f7be05a6.jpg",
        "labels/sem_seg/masks/val/7d06fefd-f7be05a6.png",
        0,
    )
    (bdd / "splits").mkdir()
    (bdd / "splits/val.txt").write_text(
        "seg/images/val/7d06fefd-f7be05a6.jpg seg/labels/val/7d06fefd-f7be05a6_train_id.png\n"
    )
    [(key, image, label)] = find_pairs("bdd", bdd, "val")
    assert key == "7d06fefd-f7be05a6" and label == bdd / "labels/sem_seg/masks/val/7d06fefd-f7be05a6.png"
    wd = tmp_path / "wilddash"
    real_corpus.write_sample(
        "wilddash", wd, "wd_val_01/au0000_100000.jpg", "wd_val_01/au0000_100000_labelIds.png", 0
    )
    (wd / "splits").mkdir()
    (wd / "splits/val.txt").write_text(
        "wd_val_01/au0000_100000.png wd_val_19class/au0000_100000_labelIds.png\n"
    )
    assert [k for k, _, _ in find_pairs("wilddash", wd, "val")] == ["au0000_100000"]


def test_idd_reads_jpg_and_png_images_and_keys_keep_the_sequence(tmp_path):
    root = tmp_path / "idd"
    real_corpus.make_dataset("idd", root, train=4)
    pairs = find_pairs("idd", root, "train")
    assert {p[1].suffix for p in pairs} == {".jpg", ".png"}
    assert [k for k, _, _ in pairs] == ["0_000000", "0_000001", "1_000000", "1_000001"], (
        "frame 0 in both sequences"
    )


def test_an_empty_split_names_the_folder_and_the_pattern(tmp_path):
    root = tmp_path / "idd"
    real_corpus.make_dataset("idd", root, train=2)
    for f in (root / "leftImg8bit/train").rglob("*"):
        if f.is_file():
            f.rename(f.with_suffix(".bmp"))
    with pytest.raises(DataError) as err:
        find_pairs("idd", root, "train")
    message = str(err.value)
    assert "train split of idd is empty" in message and str(root / "leftImg8bit/train") in message
    assert "<seq>/<frame>_leftImg8bit.png or .jpg" in message


# --- the index ------------------------------------------------------------------------------------


def test_ingest_writes_an_index_of_the_files_in_place_not_a_copy(tmp_path):
    root = tmp_path / "downloads"
    real_corpus.make_dataset("mapillary", root / "mapillary")
    result = prepare("mapillary", root, tmp_path / "raw")
    assert result["splits"] == {"train": 6, "val": 3}
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["dataset.json", INDEX]
    index = read_index(tmp_path / "raw")
    assert [len(v) for v in index.values()] == [6, 3]
    first = index["train"][0]
    assert first.image == (root / "mapillary/training/images/-mtrain000.jpg").absolute()
    assert first.image_stat == (first.image.stat().st_size, first.image.stat().st_mtime_ns)
    before = (tmp_path / "raw" / INDEX).read_bytes()
    ingest("mapillary", root / "mapillary", tmp_path / "raw")
    assert (tmp_path / "raw" / INDEX).read_bytes() == before, "same files, same index: nothing re-shards"
    label = root / "mapillary/validation/v1.2/labels/-mval001.png"
    os.utime(label, ns=(label.stat().st_atime_ns, label.stat().st_mtime_ns + 1_000_000_000))
    ingest("mapillary", root / "mapillary", tmp_path / "raw")
    assert (tmp_path / "raw" / INDEX).read_bytes() != before, "an edited label changes the index"


def test_non_utf8_file_names_are_indexed_and_packed(tmp_path):
    root = tmp_path / "kitti"
    name = os.fsdecode(b"caf\xe9_10.png")
    _save_image(root / "training/image_2" / name, (16, 8))
    _save_label(root / "training/semantic" / name, np.full((8, 16), 7))
    (root / "splits").mkdir()
    (root / "splits/val.txt").write_bytes(b"training/image_2/caf\xe9_10.png\n")  # a list in the same encoding
    assert ingest("kitti", root, tmp_path / "raw")["images"] == 1
    [sample] = read_index(tmp_path / "raw")["val"]
    assert sample.key == "caf__10" and sample.image == (root / "training/image_2" / name).absolute()
    assert write_shards(tmp_path / "raw", tmp_path / "shards", 8, progress=False)["images"] == 1


def test_extracting_the_same_archive_again_gives_the_same_index(tmp_path):
    src = tmp_path / "src"
    real_corpus.make_dataset("kitti", src)
    root = tmp_path / "downloads"
    root.mkdir()
    with zipfile.ZipFile(root / "kitti.zip", "w") as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(src).as_posix())
    prepare("kitti", root, tmp_path / "raw")
    first = (tmp_path / "raw" / INDEX).read_bytes()
    shutil.rmtree(root / "kitti")
    prepare("kitti", root, tmp_path / "raw")
    assert (tmp_path / "raw" / INDEX).read_bytes() == first, "file times come from the archive"


# --- downloads -------------------------------------------------------------------------------------


@pytest.fixture()
def server(tmp_path):
    """A loopback HTTP server (with Range support) serving tmp_path/www."""
    www = tmp_path / "www"
    www.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def send_head(self):
            path = www / self.path.lstrip("/")
            rng = self.headers.get("Range")
            if not path.is_file() or not rng:
                return super().send_head()
            data = path.read_bytes()
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            return io.BytesIO(data[start:])

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_fetch_verifies_and_resumes(server, tmp_path):
    www, url = server
    payload = bytes(range(256)) * 400
    (www / "a.zip").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "dl" / "a.zip"
    dest.parent.mkdir()
    (dest.parent / "a.zip.part").write_bytes(payload[:1000])  # an interrupted earlier download
    fetch(f"{url}/a.zip", dest, digest, progress=False)
    assert dest.read_bytes() == payload
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch(f"{url}/a.zip", tmp_path / "dl" / "b.zip", "0" * 64, progress=False)
    assert not (tmp_path / "dl" / "b.zip").exists() and not (tmp_path / "dl" / "b.zip.part").exists()
    with pytest.raises(DataError, match="HTTP 404"):
        fetch(f"{url}/missing.zip", tmp_path / "dl" / "c.zip", progress=False)


def test_locate_extracts_a_user_archive_and_ingests(tmp_path):
    src = tmp_path / "src"
    make_fixture("kitti", src)
    root = tmp_path / "downloads"
    root.mkdir()
    with zipfile.ZipFile(root / "kitti.zip", "w") as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(src).as_posix())
    folder = locate("kitti", root)
    assert (folder / "training/semantic/000000_10.png").is_file()


def test_registration_walled_dataset_says_what_to_download(tmp_path):
    with pytest.raises(DataError, match="cityscapes-dataset.com") as err:
        locate("cityscapes", tmp_path)
    assert str(tmp_path / "cityscapes") in str(err.value)


def test_archives_with_traversal_or_links_are_refused(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../escape.txt", "x")
    with pytest.raises(DataError, match="outside the extraction folder"):
        safe_extract(evil, tmp_path / "x")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "x").exists()
    linked = tmp_path / "link.tar"
    with tarfile.open(linked, "w") as tf:
        info = tarfile.TarInfo("data/link")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(DataError, match="link"):
        safe_extract(linked, tmp_path / "y")
    assert not (tmp_path / "y").exists()
