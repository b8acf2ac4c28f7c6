"""Abstention (abstain.py): θ keeps the asked share of seen-val pixels, a void prediction is a miss, the
void share of negative frames, and a label space that scores the classes a union lacks (WildDash 2)."""

import pytest
import torch
from fixed_logits import Fixed

from uniseg.evaluate.abstain import BINS, ConfidenceHistogram, NegativeScorer, WithNegatives, threshold
from uniseg.evaluate.protocols import ABSTAIN, ScoreMaps, Scorer, make_target
from uniseg.model.segmodel import ModelInfo

UNION = ["car", "road", "sky"]


def _maps(logits, loss="nullbce"):
    info = ModelInfo(UNION, "hrnet_w18_small", "cosine", 20.0, loss)
    return ScoreMaps(Fixed(logits), info, torch.zeros(1, 3, 1, len(logits)), (1, len(logits)))


def test_theta_keeps_the_coverage_of_the_counted_pixels():
    counts = torch.zeros(BINS, dtype=torch.float64)
    counts[BINS // 2] = 5  # five pixels at 0.5
    counts[BINS - 1] = 95  # ninety-five at 1.0
    assert threshold(counts, 0.95) == pytest.approx(1.0)
    assert threshold(counts, 0.96) == pytest.approx((BINS // 2) / (BINS - 1))
    assert threshold(torch.zeros(BINS)) is None


def test_the_histogram_counts_labelled_pixels_only():
    target = make_target(["road", "car"], UNION)
    hist = ConfidenceHistogram(target)
    hist.update(_maps([[-9.0, 9.0, -9.0], [9.0, -9.0, -9.0], [0.0, 0.0, 9.0]]), torch.tensor([[[0, 1, 255]]]))
    assert hist.result().sum() == 2, "the ignored pixel is not counted"


def test_a_void_pixel_is_a_miss_and_negative_frames_count_their_void_share():
    target = make_target(["road", "car"], UNION)
    logits = [[-9.0, 9.0, -9.0], [-1.0, -2.0, -9.0], [-9.0, -9.0, 9.0]]  # sure road | unsure car | sky only
    scorer = WithNegatives(Scorer(target, threshold=0.5), NegativeScorer(target, 0.5))
    labels = torch.tensor([[[0, 1, 255]]], dtype=torch.uint8)
    scorer.update(_maps(logits), labels, torch.tensor([False]))
    scorer.update(_maps(logits), torch.full((1, 1, 3), 255, dtype=torch.uint8), torch.tensor([True]))
    r = scorer.result()
    assert r.miou["restricted"] == 100.0, "without abstention the unsure car pixel is right"
    assert r.iou[ABSTAIN] == {"road": 100.0, "car": 0.0}, "abstained on: a miss"
    assert r.negative_void == pytest.approx(100 * 2 / 3, abs=0.1), "two of the negative frame's three pixels"
    assert r.positive_void == r.negative_void, "the positive frame has the same pixels: the same share"
    alone = NegativeScorer(target, 0.5)
    alone.update(_maps(logits), torch.tensor([False]))
    assert alone.result() == (None, pytest.approx(100 * 2 / 3, abs=0.1)), "no negative frame: no share"


def test_classes_the_union_lacks_can_be_scored_as_never_predicted():
    space = ["road", "pickup", "car"]
    left_out = make_target(space, UNION)
    scored = make_target(space, UNION, score_missing=True)
    assert left_out.evaluated == ["road", "car"] and scored.evaluated == ["road", "car", "pickup"]
    assert scored.size == 3 and len(scored.channels) == 2
    labels = torch.tensor([[[0, 1, 2]]], dtype=torch.uint8)  # road, pickup, car
    logits = [[-9.0, 9.0, -9.0], [9.0, -9.0, -9.0], [9.0, -9.0, -9.0]]  # road, car, car
    results = {}
    for name, target in (("left out", left_out), ("scored", scored)):
        scorer = Scorer(target)
        scorer.update(_maps(logits), labels)
        results[name] = scorer.result()
    assert results["left out"].iou["restricted"] == {"road": 100.0, "car": 100.0}
    assert results["scored"].iou["restricted"] == {"road": 100.0, "car": 50.0, "pickup": 0.0}
    assert results["scored"].miou["restricted"] == 50.0
