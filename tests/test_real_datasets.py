"""Real-dataset adapters on tiny fixtures in each dataset's official layout and encoding, `uniseg
inspect`, and the downloader against a local HTTP server."""

import functools
import hashlib
import http.server
import io
import json
import subprocess
import sys
import tarfile
import threading
import zipfile

import numpy as np
import pytest
from PIL import Image

from uniseg import taxonomy
from uniseg.datasets.download import fetch, locate, safe_extract
from uniseg.datasets.layout import read_meta
from uniseg.datasets.real import find_pairs, ingest, inspect_dataset
from uniseg.errors import DataError

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
    """Write n samples of `split` in the official layout; return the raw label arrays."""
    raws = []
    for k in range(n):
        if name == "camvid":
            idx = _raw_label(list(range(len(CAMVID))), seed=k)
            colours = np.array(list(CAMVID))
            rgb = colours[idx].astype(np.uint8)
            stem = f"0001TP_00{k}"
            _save_image(root / "701_StillsRaw_full" / f"{stem}.png")
            (root / "LabeledApproved_full").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).save(root / "LabeledApproved_full" / f"{stem}_L.png")
            raws.append([tuple(c) for c in rgb.reshape(-1, 3).tolist()])
            continue
        raw = _raw_label(list(RAW[name]), seed=k)
        raws.append(raw.ravel().tolist())
        if name in ("cityscapes", "idd"):
            stem = f"city_{k:06d}_000019"
            _save_image(root / "leftImg8bit" / split / "city" / f"{stem}_leftImg8bit.png")
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
        elif name == "mapillary":
            folder = {"train": "training", "val": "validation"}[split]
            _save_image(root / folder / "images" / f"m{k}.jpg")
            _save_label(root / folder / "v1.2/labels" / f"m{k}.png", raw, mode="P")
        elif name == "kitti":
            _save_image(root / "training/image_2" / f"{k:06d}_10.png")
            _save_label(root / "training/semantic" / f"{k:06d}_10.png", raw)
        elif name == "wilddash":
            _save_image(root / "images" / f"wd{k}.jpg")
            _save_label(root / "labels" / f"wd{k}_labelIds.png", raw)
    return raws


@pytest.mark.parametrize("name", ["cityscapes", "bdd", "idd", "mapillary", "kitti", "wilddash", "camvid"])
def test_adapter_and_inspect_count_pixels_like_an_independent_computation(name, tmp_path):
    split = "test" if name == "camvid" else "val"
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


@pytest.mark.parametrize(
    "damage, message",
    [
        ("missing root", "dataset root not found"),
        ("wrong layout", "expected the folder training/image_2"),
        ("image without label", "has no label file"),
        ("label without image", "label without an image"),
        ("truncated image", "cannot be decoded"),
        ("unknown value", "label value 99 is not in the kitti label table"),
        ("size mismatch", "differs from image size"),
    ],
)
def test_bad_real_data_is_one_clear_error_and_no_output(tmp_path, damage, message):
    root = tmp_path / "kitti"
    make_fixture("kitti", root)
    if damage == "missing root":
        root = tmp_path / "nowhere"
    elif damage == "wrong layout":
        (root / "training/image_2").rename(root / "training/images")
    elif damage == "image without label":
        (root / "training/semantic/000001_10.png").unlink()
    elif damage == "label without image":
        (root / "training/image_2/000001_10.png").unlink()
    elif damage == "truncated image":
        p = root / "training/image_2/000001_10.png"
        p.write_bytes(p.read_bytes()[:40])
    elif damage == "unknown value":
        _save_label(root / "training/semantic/000001_10.png", np.full((12, 16), 99))
    elif damage == "size mismatch":
        _save_label(root / "training/semantic/000001_10.png", np.full((5, 5), 7))
    with pytest.raises(DataError, match=message):
        ingest("kitti", root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_split_lists_select_the_evaluation_images(tmp_path):
    make_fixture("camvid", tmp_path / "camvid", "test", n=3)
    (tmp_path / "camvid/splits").mkdir()
    (tmp_path / "camvid/splits/test.txt").write_text(
        "701_StillsRaw_full/0001TP_001.png LabeledApproved_full/x.png\n"
    )
    assert [k for k, _, _ in find_pairs("camvid", tmp_path / "camvid", "test")] == ["0001TP_001"]


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
