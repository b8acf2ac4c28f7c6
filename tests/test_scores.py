"""The metric vocabulary has one owner (uniseg/scores.py): the keys of each protocol's mIoU, the group
means and the cross-pair names are spelled there and nowhere else in the library or the stages, and the
protocols it names are the ones protocols.py implements."""

import ast
from pathlib import Path

from uniseg import scores
from uniseg.evaluate.protocols import ABSTAIN, PROTOCOLS

ROOT = Path(__file__).resolve().parents[1]
# "mean" alone is also an ordinary word of other formats (the headline's summaries, a figure's axis):
# the group mean is found through MEAN_KEYS, the rest of the vocabulary is checked literally.
KEYS = (set(scores.PROTOCOL_KEYS.values()) | set(scores.MEAN_KEYS.values())) - {"mean"}
# The pretrain stage's own summary (reports/pretrain.json) names its held-out score "miou": another file,
# another owner (uniseg/train/pretrain.py), not an evaluation metric.
OTHER_FORMATS = {"uniseg/train/pretrain.py", "stages/pretrain.py"}


def _strings(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_metric_keys_are_spelled_only_in_scores():
    found = []
    for path in sorted([*(ROOT / "uniseg").rglob("*.py"), *(ROOT / "stages").glob("*.py")]):
        if path == ROOT / "uniseg" / "scores.py" or str(path.relative_to(ROOT)) in OTHER_FORMATS:
            continue
        for line, text in _strings(path):
            if text in KEYS or (
                "_in_" in text and not any(c.isspace() for c in text)
            ):  # prose may say i_in_j
                found.append(f"{path.relative_to(ROOT)}:{line}: {text!r}")
    assert not found, "metric keys spelled outside uniseg/scores.py:\n" + "\n".join(found)


def test_every_protocol_has_a_key_and_cross_names_round_trip():
    assert tuple(scores.PROTOCOL_KEYS) == (*PROTOCOLS, ABSTAIN) and scores.EVERY_TASK == PROTOCOLS
    assert set(scores.PROTOCOL_KEYS.values()) <= set(scores.MEAN_KEYS), (
        "every protocol's key has a group mean"
    )
    assert scores.parse_cross(scores.cross_name("mapillary", "cityscapes")) == ("mapillary", "cityscapes")
    assert scores.parse_cross("kitti") is None
