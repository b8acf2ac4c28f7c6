"""The union readout (readout.py) on a tiny world whose truth is known, the headroom of a confusion matrix,
and the truth they read from the policies (which names lie outside a dataset's space, which relations an
unseen set can score)."""

import pytest
import torch
from fixed_logits import Fixed

from uniseg.datasets.synthetic import oracle_relations, outside_names
from uniseg.datasets.synthetic.truth import scored_secondaries
from uniseg.evaluate.protocols import ScoreMaps, Scorer, make_target
from uniseg.evaluate.readout import ReadoutScorer, make_readout, outside_top1
from uniseg.metrics import mean_iou, perfected_miou
from uniseg.model.segmodel import ModelInfo

UNION = ["bicyclist", "lane marking - general", "rider", "road"]
SPACE = ["road", "rider"]  # a Cityscapes-like dataset: no bicyclist, no lane marking
WORLD = ["road", "lane marking", "bicyclist"]
NAMES = {"lane marking": ["lane marking - general"], "bicyclist": ["bicyclist"]}


# Columns: bicyclist, lane marking - general, rider, road. Pixels: road | lane marking | lane marking | bicyclist.
LOGITS = [
    [-5.0, -4.0, -6.0, 5.0],  # road pixel: not read
    [-3.0, 2.0, -6.0, 4.0],  # lane marking: outside top-1 right, p > 0.5
    [-1.0, -2.0, -6.0, 4.0],  # lane marking: outside top-1 is bicyclist, wrong
    [-1.0, -3.0, 3.0, -6.0],  # bicyclist: right, p < 0.5 (the dataset's own rider fires)
]
WORLDS = torch.tensor([[[0, 1, 1, 2]]], dtype=torch.uint8)


def _maps(loss: str) -> ScoreMaps:
    info = ModelInfo(UNION, "hrnet_w18_small", "cosine", 20.0, loss)
    return ScoreMaps(Fixed(LOGITS), info, torch.zeros(1, 3, 1, 4), (1, 4))


@pytest.mark.parametrize("loss", ["nullbce", "ce"])
def test_the_readout_scores_the_outside_top1_on_the_pixels_another_dataset_names_finer(loss):
    readout = make_readout("cs", SPACE, UNION, WORLD, NAMES)
    assert [w for _, w in readout.worlds] == ["lane marking", "bicyclist"]
    scorer = ReadoutScorer(readout, sigmoid=loss != "ce")
    scorer.update(_maps(loss), WORLDS)
    r = scorer.result()
    assert r.top1 == {"lane marking": 50.0, "bicyclist": 100.0}
    assert r.pixels == {"lane marking": 2, "bicyclist": 1}
    if loss == "ce":
        assert r.confident is None, "the probability threshold is read for sigmoid models only"
    else:
        assert r.confident == {"lane marking": 50.0, "bicyclist": 0.0}
    top1, score = outside_top1(_maps(loss), readout)
    assert [UNION[i] for i in top1[0, 0].tolist()] == [
        "lane marking - general",
        "lane marking - general",
        "bicyclist",
        "bicyclist",
    ]
    assert score[0, 0, 1] == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item()) or loss == "ce"


def test_no_readout_without_a_class_outside_the_space():
    assert make_readout("all", UNION, UNION, WORLD, NAMES) is None


def test_the_headroom_is_the_gain_of_perfect_conflict_classes_and_nothing_else():
    conf = torch.tensor([[8.0, 2.0, 0.0], [4.0, 6.0, 0.0], [0.0, 0.0, 10.0]], dtype=torch.float64)
    base = mean_iou(conf)[0]
    perfect = torch.tensor([[10.0, 0.0, 0.0], [4.0, 6.0, 0.0], [0.0, 0.0, 10.0]], dtype=torch.float64)
    assert perfected_miou(conf, [0]) == pytest.approx(mean_iou(perfect)[0])
    assert perfected_miou(conf, []) == pytest.approx(base)
    assert perfected_miou(conf, [0, 1]) == pytest.approx(100.0)
    target = make_target(["road", "rider", "car"], ["car", "rider", "road"])
    scorer = Scorer(target, conflict=["rider"])
    scorer.conf["restricted"] += conf
    assert scorer.result().headroom == pytest.approx(round(perfected_miou(conf, [1]) - base, 2))
    assert Scorer(target).result().headroom is None


def test_the_truth_of_the_readout_and_of_the_oracle_comes_from_the_policies():
    train = ["cityscapes", "bdd", "idd", "mapillary"]
    names = outside_names("cityscapes", train)
    assert names["lane marking"] == ["lane marking - general"] and names["bicyclist"] == ["bicyclist"]
    assert names["caravan"] == ["caravan", "vehicle fallback"], "every outside name of the pixels counts"
    assert "sidewalk" not in names and "curb" in names
    assert outside_names("idd", train)["terrain"] == ["terrain"]
    oracle = oracle_relations(train, ["kitti", "wilddash", "camvid"])
    assert ("mapillary", "bicyclist", "rider") in oracle and ("idd", "curb", "sidewalk") in oracle
    assert ("mapillary", "ground animal", "person") not in oracle, "animals are not scored on the test sets"
    assert ("mapillary", "caravan", "vehicle fallback") not in oracle
    assert scored_secondaries(train, "kitti") == ["rider", "road", "sidewalk", "terrain"]


# The full-union IoU. Pixels: road (bicyclist wins: a false positive) | lane marking (lane marking wins) |
# lane marking (road wins: a miss) | bicyclist (bicyclist wins) | void world pixel (lane marking wins: ignored).
FULL_LOGITS = [
    [3.0, -1.0, -1.0, 1.0],
    [-1.0, 3.0, -1.0, 1.0],
    [-1.0, 1.0, -1.0, 3.0],
    [3.0, -1.0, 1.0, -1.0],
    [-1.0, 3.0, -1.0, 1.0],
]
FULL_WORLDS = torch.tensor([[[0, 1, 1, 2, 255]]], dtype=torch.uint8)


@pytest.mark.parametrize("loss", ["nullbce", "ce"])
def test_the_full_union_iou_counts_false_positives_and_misses_alike_for_softmax_and_sigmoid(loss):
    from uniseg.evaluate.evaluation import Task
    from uniseg.scores import model_metrics

    # The dataset's own space names road and lane-marking pixels (as road), not bicyclists: only the
    # lane-marking cell is one a relation can reach.
    readout = make_readout("cs", SPACE, UNION, WORLD, NAMES, covered=["road", "lane marking"])
    scorer = ReadoutScorer(readout, sigmoid=loss != "ce")
    info = ModelInfo(UNION, "hrnet_w18_small", "cosine", 20.0, loss)
    scorer.update(ScoreMaps(Fixed(FULL_LOGITS), info, torch.zeros(1, 3, 1, 5), (1, 5)), FULL_WORLDS)
    r = scorer.result()
    assert r.iou == {"bicyclist": 50.0, "lane marking - general": 50.0}, "1 of 2 pixels in each union"
    assert r.reachable == ("lane marking - general",)
    entry = model_metrics({Task("union", "cs", "cs", "cs"): r})["union"]
    assert entry["cs"]["iou_full"] == 50.0 and entry["cs"]["iou_full_reachable"] == 50.0
    assert entry["mean_iou_full"] == 50.0 and entry["cs"]["reachable_cells"] == ["lane marking - general"]


def test_the_headroom_leaves_out_what_only_a_convention_relation_moves():
    from uniseg.evaluate.sources import SyntheticSource

    train = ["cityscapes", "bdd", "idd", "mapillary"]
    assert "traffic sign" in scored_secondaries(train, "camvid"), "CamVid's sign backs as traffic sign"
    assert SyntheticSource().headroom_classes(train, "camvid") == ["road", "sidewalk"]
    assert SyntheticSource().headroom_classes(train, "kitti") == scored_secondaries(train, "kitti")
