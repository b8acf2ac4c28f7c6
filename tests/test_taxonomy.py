"""The unified taxonomy: label-space sizes, the paper's union sizes, resolution against a union."""

import json
import subprocess
import sys

import numpy as np
import pytest

from uniseg import IGNORE, taxonomy
from uniseg.errors import UserError


@pytest.mark.parametrize(
    "name, size",
    [
        ("cityscapes", 19),
        ("bdd", 19),
        ("idd", 26),
        ("mapillary", 65),
        ("kitti", 19),
        ("wilddash", 19),
        ("camvid", 11),
    ],
)
def test_label_space_sizes(name, size):
    assert len(taxonomy.label_space(name)) == size


@pytest.mark.parametrize(
    "mix, size",
    [
        (["cityscapes", "idd", "bdd", "mapillary"], 70),
        (["cityscapes", "idd", "bdd"], 28),
        (["cityscapes", "bdd", "mapillary"], 67),
        (["idd", "bdd", "mapillary"], 70),
        (["cityscapes", "idd", "mapillary"], 70),
    ],
)
def test_union_sizes_are_the_papers(mix, size):
    union = taxonomy.union(map(taxonomy.label_space, mix))
    assert len(union) == size and union == sorted(union)


def test_test_set_resolutions():
    assert taxonomy.dataset_info("camvid").resolution == (960, 720)
    assert taxonomy.dataset_info("kitti").resolution == (1242, 375)
    assert taxonomy.dataset_info("wilddash").resolution == (1920, 1080)


def test_aliases_are_data():
    mapillary = taxonomy.dataset_info("mapillary")
    front = [r for r in mapillary.rows if r.raw_name.lower() == "traffic sign (front)"]
    assert front and front[0].name == "traffic sign"


def test_resolution_reports_missing_classes_and_keeps_alignment():
    union = taxonomy.union(map(taxonomy.label_space, ["cityscapes", "idd", "bdd"]))
    res = taxonomy.resolve(taxonomy.label_space("camvid"), union, taxonomy.dataset_info("camvid").fallbacks)
    assert res.missing == ()
    assert res.fallbacks_used == {"bicyclist": "rider"}, "explicit, documented fallback"
    res = taxonomy.resolve(["road", "hovercraft", "car"], union)
    assert res.missing == ("hovercraft",) and res.union_index[1] is None
    assert union[res.union_index[2]] == "car"


def test_space_to_union_lut():
    lut = taxonomy.space_to_union_lut(["road", "car"], ["car", "road", "sky"])
    assert lut[0] == 1 and lut[1] == 0 and lut[2] == IGNORE and lut[255] == IGNORE


def test_raw_lut_and_unknown_names():
    lut = taxonomy.raw_lut("cityscapes")
    space = taxonomy.label_space("cityscapes")
    assert space[lut[7]] == "road" and lut[0] == IGNORE
    assert (lut == taxonomy.UNKNOWN).sum() > 0, "values outside the table are flagged, not mapped"
    with pytest.raises(UserError, match="known datasets: cityscapes"):
        taxonomy.label_space("citiscapes")
    colours, targets = taxonomy.colour_table("camvid")
    assert colours.dtype == np.uint8 and len(colours) == 32 and (targets != IGNORE).sum() == 11


def test_cli_taxonomy_json():
    out = subprocess.run(
        [sys.executable, "-m", "uniseg.cli", "taxonomy", "cityscapes", "idd", "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    records = json.loads(out.stdout)
    assert records[0] == {"index": 0, "name": "autorickshaw", "datasets": ["idd"]}
    bad = subprocess.run(
        [sys.executable, "-m", "uniseg.cli", "taxonomy", "nowhere"], capture_output=True, text=True
    )
    assert (
        bad.returncode == 1
        and bad.stderr.startswith("error: unknown dataset")
        and "Traceback" not in bad.stderr
    )
