"""Getting the real datasets: resumable, checksum-verified download of public archives, safe extraction,
and clear instructions for the datasets behind a registration wall.

A dataset is looked for under `data.root` (params) as, in this order: a folder `<root>/<name>/` in the
official layout, an archive `<root>/<name>.zip|.tar|.tar.gz|.tgz` (extracted into `<root>/<name>/`), or —
for public datasets — the archive at its URL (downloaded to `<root>/<name>.<ext>` first). The folder is
then indexed, not copied (real.ingest): the shard stage reads it in place.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from uniseg.errors import DataError, UserError
from uniseg.fsio import atomic_dir

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")


@dataclass(frozen=True)
class Source:
    how: str  # what the user must download, and from where
    url: str | None = None  # public archive
    sha256: str | None = None  # pinned checksum of the public archive
    strip: int = 0  # leading path components to drop when extracting
    optional: bool = False  # a profile may leave it out: absent, it is recorded as such, not an error


SOURCES = {
    "cityscapes": Source(
        "leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from https://www.cityscapes-dataset.com (registration)"
    ),
    "bdd": Source(
        "bdd100k_images_10k.zip and bdd100k_sem_seg_labels_trainval.zip from https://bdd-data.berkeley.edu (registration)"
    ),
    "idd": Source(
        "IDD Segmentation (idd-segmentation.tar.gz) from https://idd.insaan.iiit.ac.in (registration); make the "
        "label-id PNGs (_gtFine_labelids.png) with the official public-code preparation/createLabels.py (--id-type id); uniseg maps ids to level 3"
    ),
    "mapillary": Source(
        "Mapillary Vistas v1.2 (research edition) from https://www.mapillary.com/dataset/vistas (registration)"
    ),
    "kitti": Source(
        "data_semantics.zip (KITTI semantic segmentation, public)",
        url="https://s3.eu-central-1.amazonaws.com/avg-kitti/data_semantics.zip",
    ),
    "wilddash": Source("wd_val_01.zip (WildDash v1 validation) from https://wilddash.cc (registration)"),
    "wilddash2": Source(
        "wd_public_v2p0.zip (WildDash 2, the final public ground truth; its size and checksum are not published) "
        "from https://wilddash.cc/download (registration); the folder holds images/, panoptic/ and panoptic.json",
        optional=True,
    ),
    "camvid": Source(
        "the CamVid 701_StillsRaw_full and LabeledApproved_full folders (e.g. from the Cambridge CamVid page); "
        "uniseg ships MSeg's val list (101 images), other splits need splits/<split>.txt"
    ),
}


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(
    url: str, dest: str | Path, sha256: str | None = None, timeout: float = 30.0, progress: bool = True
) -> Path:
    """Download `url` to `dest`, resuming a partial `<dest>.part` with an HTTP Range request; verify
    the checksum when one is given. The file appears at `dest` only when complete and verified."""
    from tqdm import tqdm

    dest = Path(dest)
    if dest.is_file() and (sha256 is None or sha256_of(dest) == sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the partial file is already complete
            response = None
        else:
            raise DataError(f"{url}: download failed (HTTP {exc.code} {exc.reason})") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DataError(
            f"{url}: cannot be reached ({getattr(exc, 'reason', exc)}); download it yourself to {dest}"
        ) from None
    if response is not None:
        with response:
            resumed = response.status == 206
            mode = "ab" if resumed else "wb"
            total = response.headers.get("Content-Length")
            total = int(total) + (have if resumed else 0) if total else None
            with (
                open(part, mode) as f,
                tqdm(
                    total=total,
                    initial=have if resumed else 0,
                    unit="B",
                    unit_scale=True,
                    desc=dest.name,
                    disable=not progress,
                ) as bar,
            ):
                for block in iter(lambda: response.read(1 << 20), b""):
                    f.write(block)
                    bar.update(len(block))
    if sha256 is not None:
        got = sha256_of(part)
        if got != sha256:
            part.unlink()
            raise DataError(
                f"{dest.name}: checksum mismatch (sha256 {got}, expected {sha256}); the partial download was removed, rerun to fetch it again"
            )
    os.replace(part, dest)
    return dest


def _safe_target(base: Path, name: str, strip: int) -> Path | None:
    parts = [p for p in Path(name).parts if p not in ("", ".")]
    if Path(name).is_absolute() or ".." in parts:
        raise DataError(f"archive member {name!r} points outside the extraction folder; refusing to extract")
    parts = parts[strip:]
    return base.joinpath(*parts) if parts else None


def _keep_mtime(path: Path, mtime: float) -> None:
    # The archive's times, not the extraction's: extracting the same archive again gives the same index
    # (sizes and mtimes), so nothing is re-sharded.
    os.utime(path, (mtime, mtime))


def safe_extract(archive: str | Path, target: str | Path, strip: int = 0) -> Path:
    """Extract a zip or tar archive into `target` (atomically). Members with absolute paths or `..`,
    and links, are refused: nothing is written outside `target`."""
    archive, target = Path(archive), Path(target)
    with atomic_dir(target) as tmp:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    dest = _safe_target(tmp, info.filename, strip)
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise DataError(
                            f"{archive}: member {info.filename!r} is a symbolic link; refusing to extract"
                        )
                    if dest is None or info.is_dir():
                        continue
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(dest, "wb") as out:
                        shutil.copyfileobj(src, out)
                    _keep_mtime(dest, time.mktime((*info.date_time, 0, 0, -1)))
        else:
            try:
                tf = tarfile.open(archive)
            except tarfile.TarError as exc:
                raise DataError(f"{archive}: not a zip or tar archive ({exc})") from None
            with tf:
                for member in tf:
                    dest = _safe_target(tmp, member.name, strip)
                    if member.issym() or member.islnk() or not (member.isfile() or member.isdir()):
                        raise DataError(
                            f"{archive}: member {member.name!r} is a link or device; refusing to extract"
                        )
                    if dest is None or member.isdir():
                        continue
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    src = tf.extractfile(member)
                    with src, open(dest, "wb") as out:
                        shutil.copyfileobj(src, out)
                    _keep_mtime(dest, member.mtime)
    return target


def locate(name: str, root: str | Path, progress: bool = True) -> Path:
    """The dataset's folder in its official layout under `root`: found, extracted, or downloaded."""
    root = Path(root)
    if name not in SOURCES:
        raise UserError(f"unknown dataset {name!r}; known datasets: {', '.join(SOURCES)}")
    folder = root / name
    if folder.is_dir():
        return folder
    for suffix in ARCHIVE_SUFFIXES:
        archive = root / f"{name}{suffix}"
        if archive.is_file():
            return safe_extract(archive, folder, SOURCES[name].strip)
    source = SOURCES[name]
    if source.url:
        suffix = next((s for s in ARCHIVE_SUFFIXES if source.url.endswith(s)), ".zip")
        archive = fetch(source.url, root / f"{name}{suffix}", source.sha256, progress=progress)
        return safe_extract(archive, folder, source.strip)
    raise DataError(
        f"{name} is not under {root}: download {source.how}, then put the extracted folder at {folder}/ "
        f"(official layout) or the archive at {root}/{name}.zip or .tar.gz"
    )


def prepare(name: str, root: str | Path, out_dir: str | Path) -> dict:
    """Locate (or download) a real dataset and index it at `out_dir` (real.ingest): {"images", "splits",
    "root"}."""
    from uniseg.datasets.real import ingest

    try:
        folder = locate(name, root)
    except DataError as exc:
        if not SOURCES[name].optional:
            raise
        record_absent(name, out_dir)
        return {"images": 0, "splits": {}, "root": f"absent ({exc})"}
    return {**ingest(name, folder, out_dir), "root": str(folder)}


def record_absent(name: str, out_dir: str | Path) -> None:
    """An optional dataset that is not there: dataset.json with source "absent" (the shard stage passes it
    on; evaluating it is an error that says what to download)."""
    from uniseg import taxonomy
    from uniseg.datasets.layout import DatasetMeta, write_meta
    from uniseg.fsio import atomic_dir

    info = taxonomy.dataset_info(name)
    with atomic_dir(out_dir) as tmp:
        write_meta(tmp, DatasetMeta(name, ABSENT, list(info.classes), {}, dict(info.fallbacks)))


ABSENT = "absent"  # DatasetMeta.source of an optional dataset that was not found


def preview_index(raw_dir: str | Path, out: str | Path, n: int = 4) -> None:
    """Preview of an indexed real dataset: its first n samples that decode (corrupt ones are left to the
    shard stage to report) of its first split, labels converted."""
    import numpy as np

    from uniseg.datasets.index import read_index
    from uniseg.datasets.layout import read_meta
    from uniseg.datasets.preview import write_grid
    from uniseg.datasets.real import read_sample

    meta = read_meta(raw_dir)
    if meta.source == ABSENT:
        from uniseg.datasets.preview import write_note

        return write_note(
            f"{meta.name}: not found", f"{meta.name} is optional: {SOURCES[meta.name].how}", out
        )
    split, samples = next(iter(read_index(raw_dir).items()))
    images, labels, first_error = [], [], None
    for s in samples[: 4 * n]:
        try:
            image, label = read_sample(meta.name, s.image, s.label)
        except DataError as exc:
            first_error = first_error or exc
            continue
        images.append(np.asarray(image))
        labels.append(label)
        if len(images) == n:
            break
    if not images:
        raise first_error
    write_grid(images, labels, meta.classes, f"{meta.name} (real, {split}): {len(meta.classes)} classes", out)
