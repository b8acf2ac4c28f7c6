"""The embedded synthetic benchmark: world, policies, generation, ground-truth relations."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from uniseg import IGNORE, taxonomy
from uniseg.datasets.layout import list_samples, read_meta
from uniseg.datasets.synthetic import (
    WORLD_CLASSES,
    dataset_names,
    expected_relations,
    generate_dataset,
    label_space,
    load_policy,
    world_to_space_lut,
)
from uniseg.datasets.synthetic.appearance import render
from uniseg.errors import DataError
from uniseg.params import SyntheticParams

TRAIN = ["cityscapes", "bdd", "idd", "mapillary"]
SMALL = SyntheticParams(seed=3, height=64, width=128, train_images=3, val_images=2, test_images=2)


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_world_has_the_fine_grained_classes_the_conflicts_need():
    for name in ["lane marking", "crosswalk", "curb", "traffic sign back", "caravan", "trailer", "ground animal",
                 "bicyclist", "motorcyclist", "autorickshaw"]:  # fmt: skip
        assert name in WORLD_CLASSES


def test_render_is_deterministic_and_draws_a_road_scene():
    style = load_policy("cityscapes").style
    a_img, a_world = render(style, 4, seed=7, height=96, width=192)
    b_img, b_world = render(style, 4, seed=7, height=96, width=192)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_world, b_world)
    present = {WORLD_CLASSES[v] for v in np.unique(a_world)}
    assert {"sky", "road", "building"} <= present
    top, bottom = a_world[:, :10], a_world[:, -10:]
    assert (top == WORLD_CLASSES.index("sky")).mean() > 0.5, "sky on top"
    assert (bottom == WORLD_CLASSES.index("road")).mean() > 0.3, "road at the bottom"


def test_generation_is_byte_identical_for_the_same_seed(tmp_path):
    generate_dataset("idd", tmp_path / "a", SMALL)
    generate_dataset("idd", tmp_path / "b", SMALL)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    meta = read_meta(tmp_path / "a")
    assert meta.splits == {"train": 3, "val": 2} and meta.source == "synthetic"
    assert read_meta(tmp_path / "a").classes == label_space("idd")


@pytest.mark.parametrize("name", dataset_names())
def test_label_values_are_in_the_real_label_space(name, tmp_path):
    meta = generate_dataset(name, tmp_path / name, SMALL)
    real = taxonomy.label_space(load_policy(name).like)
    assert set(meta.classes) <= set(real)
    assert [c for c in real if c in meta.classes] == meta.classes, "real order kept"
    for split in meta.splits:
        for s in list_samples(tmp_path / name, split):
            label = np.asarray(Image.open(s.label))
            world = np.asarray(Image.open(s.world))
            assert set(np.unique(label)) - {IGNORE} <= set(range(len(meta.classes)))
            assert np.array_equal(label, world_to_space_lut(name)[world]), (
                "labels are the policy applied to the world"
            )


def test_test_datasets_have_only_a_val_split(tmp_path):
    meta = generate_dataset("kitti", tmp_path / "k", SMALL)
    assert meta.splits == {"val": 2}


def test_the_synthetic_label_spaces_are_the_real_ones_whole():
    """Classes the world never draws stay in the label space (they decide where a loss gives gradient):
    the synthetic union is the paper's 70 classes, and every drawn name is one of them."""
    for d in TRAIN + ["kitti", "wilddash", "camvid"]:
        assert label_space(d) == taxonomy.label_space(load_policy(d).like), d
    synthetic = taxonomy.union(label_space(d) for d in TRAIN)
    assert synthetic == taxonomy.union(map(taxonomy.label_space, TRAIN)) and len(synthetic) == 70
    rendered = {n for d in TRAIN for n in load_policy(d).labels.values() if n}
    assert rendered < set(synthetic)


def test_the_papers_conflicts_are_expected_relations():
    """taxonomy/paper_relations.tsv says which of Table A-1's relations the benchmark draws: exactly
    those are expected relations (mapillary's primary -> the secondary), and there are several."""
    truth = {(d, a, b) for d, a, b, kind in expected_relations(TRAIN) if kind == "relation"}
    drawn = [(a, b) for a, b, synthetic in taxonomy.paper_relations() if synthetic]
    assert len(drawn) >= 5
    for a, b, synthetic in taxonomy.paper_relations():
        assert (("mapillary", a, b) in truth) == synthetic, (a, b)
    assert ("mapillary", "curb", "sidewalk") in truth, "the benchmark's own curb convention"
    assert ("cityscapes", "rider", "bicyclist") not in truth, "the reverse (coarse -> fine) is not a relation"


def test_cli_prints_expected_relations_as_json():
    out = subprocess.run(
        [sys.executable, "-m", "uniseg.cli", "synthetic", "relations", "--datasets", "cityscapes", "mapillary", "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    import json

    rows = json.loads(out.stdout)
    assert {"dataset": "mapillary", "primary": "bicyclist", "secondary": "rider"} in [
        {k: r[k] for k in ("dataset", "primary", "secondary")} for r in rows
    ]


def test_a_user_written_policy_defines_a_new_dataset(tmp_path):
    path = tmp_path / "mycity.yaml"
    labels = "\n".join(
        f"  {w}: {'vehicle' if w in ('car', 'truck', 'bus') else 'background'}" for w in WORLD_CLASSES
    )
    path.write_text(
        f"role: train\nclasses: [background, vehicle]\nlabels:\n{labels}\nstyle:\n  tint: [0.9, 1.0, 1.1]\n"
    )
    policy = load_policy(path)
    assert policy.classes == ["background", "vehicle"]
    lut = world_to_space_lut(policy)
    assert lut[WORLD_CLASSES.index("car")] == 1 and lut[WORLD_CLASSES.index("sky")] == 0


@pytest.mark.parametrize(
    "text, message",
    [
        ("role: train\nlike: cityscapes\nlabels: {spaceship: car}\n", "unknown world class 'spaceship'"),
        (
            "role: train\nlike: cityscapes\nlabels_from: cityscapes\nstyle: {sparkle: 1}\n",
            "style: unknown key 'sparkle'",
        ),
        ("role: train\nlike: cityscapes\nlabels: [\n", "malformed YAML"),
        ("role: train\nlike: cityscapes\ncolour: red\nlabels_from: cityscapes\n", "unknown key 'colour'"),
        ("role: sometimes\nlike: cityscapes\nlabels_from: cityscapes\n", "key 'role'"),
    ],
)
def test_bad_policy_files_name_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as err:
        load_policy(path)
    assert "bad.yaml" in str(err.value)


def test_a_label_name_outside_the_label_space_is_named(tmp_path):
    labels = "\n".join(f"  {w}: {'hovercraft' if w == 'car' else 'null'}" for w in WORLD_CLASSES)
    path = tmp_path / "bad.yaml"
    path.write_text(f"role: train\nlike: cityscapes\nlabels:\n{labels}\n")
    with pytest.raises(DataError, match="'car' -> 'hovercraft'"):
        load_policy(path)


def test_label_conflicts_say_which_null_bce_resolves():
    from uniseg.datasets.synthetic import label_conflicts

    rows = {(r["world"], r["a"], r["b"]): r for r in label_conflicts(TRAIN)}
    rider = rows[("bicyclist", "cityscapes", "mapillary")]
    assert (rider["name_a"], rider["name_b"], rider["null_bce_resolves"]) == ("rider", "bicyclist", True)
    terrain = rows[("terrain", "cityscapes", "idd")]
    assert (terrain["name_b"], terrain["null_bce_resolves"]) == ("rail track", True)
    assert rows[("terrain", "idd", "mapillary")]["null_bce_resolves"] is False, (
        "rail track is a Mapillary class"
    )
    assert rows[("lane marking", "cityscapes", "mapillary")]["null_bce_resolves"] is False, (
        "road is in Mapillary's space"
    )


def test_equivalent_relations_are_the_same_pixels_named_differently():
    from uniseg.datasets.synthetic import ground_truth_relations

    truth, equivalent = ground_truth_relations(TRAIN)
    assert ("idd", "rail track", "terrain") in equivalent and (
        "cityscapes",
        "terrain",
        "rail track",
    ) in equivalent
    assert ("mapillary", "bicyclist", "rider") in truth and (
        "mapillary",
        "bicyclist",
        "rider",
    ) not in equivalent
    assert set(equivalent) <= set(truth)
