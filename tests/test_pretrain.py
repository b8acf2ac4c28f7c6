"""The pretrain stage's library: presence labels, the held-out scores, both tasks end to end on a tiny
budget, determinism, and the backbone file that model.pretrained loads."""

from __future__ import annotations

import math

import pytest
import torch

from uniseg.datasets.synthetic.world import WORLD_CLASSES
from uniseg.model.backbones import create_encoder, read_backbone_file, save_backbone_file
from uniseg.params import PretrainParams
from uniseg.train.pretrain import average_precision, presence, pretrain_backbone, render_set


def test_presence_counts_a_class_only_from_min_pixels():
    worlds = torch.zeros(2, 4, 4, dtype=torch.uint8)
    worlds[0, :2, :2] = 3  # 4 pixels of class 3
    worlds[1, 0, 0] = 5  # 1 pixel of class 5
    out = presence(worlds, min_pixels=4)
    assert out.shape == (2, len(WORLD_CLASSES))
    assert out[0, 3] == 1 and out[0, 0] == 1  # class 0 covers the other 12 pixels
    assert out[1, 5] == 0 and out[1, 0] == 1
    assert out.sum() == 3


def test_average_precision_of_a_perfect_a_reversed_and_an_empty_ranking():
    targets = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.8, 0.2, 0.5], [0.1, 0.3, 0.5], [0.0, 0.4, 0.5]])
    ap = average_precision(scores, targets)
    assert ap[0] == pytest.approx(1.0)
    # class 1 ranked 4, 3, 2, 1: positives (rows 1, 2) come at ranks 3 and 2 -> (1/2 + 2/3) / 2
    assert ap[1] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert math.isnan(ap[2])


def test_scenes_are_deterministic_and_the_same_with_worker_processes():
    a = render_set(3, seed=0, height=64, width=128, workers=1)
    b = render_set(3, seed=0, height=64, width=128, workers=2)
    c = render_set(3, seed=1, height=64, width=128, workers=1)
    assert all((x == y).all() for x, y in zip(a, b, strict=True))
    assert not (a[0] == c[0]).all()
    assert a[1].max() < len(WORLD_CLASSES)


@pytest.mark.parametrize(
    ("task", "mean_key", "per_class_key", "backbone"),
    [
        ("presence", "map", "ap", "hrnet_w18_small"),
        ("segmentation", "miou", "iou", "hrnet_w18_small"),
        ("segmentation", "miou", "iou", "mit_b0"),
    ],
)
def test_both_tasks_train_deterministically_and_write_a_loadable_backbone_file(
    task, mean_key, per_class_key, backbone, tmp_path
):
    cfg = PretrainParams(task=task, backbone=backbone, images=8, iters=2, batch_size=2, seed=0)
    lines = []
    encoder, summary = pretrain_backbone(cfg, 64, 128, workers=1, progress=lines.append)
    again, _ = pretrain_backbone(cfg, 64, 128, workers=1, progress=lambda _: None)
    assert set(summary) == {"final_loss", mean_key, per_class_key, "seconds"}
    assert set(summary[per_class_key]) <= set(WORLD_CLASSES) and summary[per_class_key]
    assert 0 <= summary[mean_key] <= 100
    assert lines[0].startswith("pretrain: rendered 8 + 8 scenes") and "iteration 2/2" in lines[-1]
    for k, v in encoder.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k

    path = tmp_path / "pretrained.pt"
    save_backbone_file(path, encoder, cfg.backbone, summary)
    assert read_backbone_file(path)["summary"] == summary
    loaded = create_encoder(cfg.backbone, str(path))
    for k, v in encoder.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
