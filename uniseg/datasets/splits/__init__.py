"""Which images make up a split of a real dataset: the user's list, else the standard list shipped here,
else every image the dataset's layout finds.

The shipped lists (`<dataset>-<split>.txt` beside this file) are MSeg's `val` lists, copied byte for byte
from mseg-dataset/mseg-api under a `#` header that gives repository, path, commit, git blob id, entry
count and entry format. They are the lists MSeg's zero-shot evaluation reads (mseg-semantic,
tool/test_universal_tax.py: "always evaluating on val split"): KITTI val 50, WildDash val 70, CamVid val
101 (not CamVid's 233-image test list), and the val splits of the training datasets.

A user's list `<dataset root>/splits/<split>.txt` overrides the shipped one: one entry per line, the
image's path relative to the dataset root first (MSeg's lists work as they are), `#` starts a comment.

WildDash 2 has no official val split and its public image names could not be obtained here, so its
evaluation set is pinned by a seeded rule instead of a list (`SELECTIONS`): the `count` images whose
sha256("<salt>:<key>") is smallest, among those of the pinned public archive — the same images on every
machine that has that archive, a different sample for another salt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent


@dataclass(frozen=True)
class SplitList:
    path: Path
    entries: list[tuple[int, str]]  # (line number, first column: an image path or file stem)


def read_list(path: Path) -> SplitList:
    entries = []
    # surrogateescape: a list names files as the file system does, UTF-8 or not (as os.fsdecode).
    for number, line in enumerate(path.read_text("utf-8", "surrogateescape").splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            entries.append((number, line.split()[0]))
    return SplitList(path, entries)


# (dataset, split) -> (images kept, salt): a seeded selection where no list is shipped (see above).
SELECTIONS = {("wilddash2", "val"): (1000, "uniseg/wilddash2/v2p0")}


def select(name: str, split: str, keys: list[str]) -> list[str]:
    """The keys a seeded selection keeps (sorted), or all of them when (name, split) has none."""
    import hashlib

    if (name, split) not in SELECTIONS:
        return sorted(keys)
    count, salt = SELECTIONS[(name, split)]
    rank = sorted(keys, key=lambda k: hashlib.sha256(f"{salt}:{k}".encode()).hexdigest())
    return sorted(rank[:count])


def shipped(name: str, split: str) -> Path | None:
    path = HERE / f"{name}-{split}.txt"
    return path if path.is_file() else None


def split_list(name: str, split: str, root: Path) -> SplitList | None:
    """The list that selects `split` of dataset `name` at `root`, or None (the whole layout)."""
    own = Path(root) / "splits" / f"{split}.txt"
    if own.is_file():
        return read_list(own)
    pinned = shipped(name, split)
    return read_list(pinned) if pinned else None
