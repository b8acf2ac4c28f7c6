"""Atomic file and directory writes: a killed or failing writer never leaves a file a later run accepts.

Everything the pipeline writes goes through here: write to a temporary sibling, fsync, rename over the
target. A rename within one directory is atomic on POSIX, so readers see the old file or the new one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from uniseg.errors import UserError

# The process's umask: temporary files and folders are created private (0600/0700) and get the mode a
# plain write would have given them before they are renamed into place (shared clusters need 0644/0755).
_UMASK = os.umask(0)
os.umask(_UMASK)


def _explain(exc: OSError, target: Path) -> UserError:
    if exc.errno == errno.ENOSPC:
        return UserError(f"{target}: no space left on the device while writing; free space and rerun")
    return UserError(f"{target}: could not write ({exc.strerror or exc})")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `target`; on success it is renamed to `target`, else removed.

    Writers that need a file name (torch.save, PIL, pyarrow) write to the yielded path.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _explain(exc, target) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_torch(obj, target: str | os.PathLike) -> None:
    """torch.save(obj) atomically. The temporary file has the target's own name (in a temporary folder
    beside it): torch.save records the file's stem inside the archive, so a randomly named temporary
    file would make every save of the same object differ byte for byte (and dvc.lock change)."""
    import torch

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        torch.save(obj, folder / target.name)
        with open(folder / target.name, "rb") as f:
            os.fsync(f.fileno())
        os.replace(folder / target.name, target)
    except OSError as exc:
        raise _explain(exc, target) from exc
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_bytes(target: str | os.PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | os.PathLike, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | os.PathLike, obj, indent: int | None = 2) -> None:
    write_text(target, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory next to `target`; on success it replaces `target` whole.

    The old directory (if any) stays in place until the new one is complete, so a failure leaves the
    previous output intact.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _explain(exc, target) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
