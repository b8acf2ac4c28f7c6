"""Confusion matrix and mIoU, the restricted and merged protocols, and cross-label-space ground truth."""

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassJaccardIndex

from uniseg import IGNORE
from uniseg.errors import UserError
from uniseg.evaluate.evaluation import plan_tasks
from uniseg.evaluate.protocols import Scorer, make_target, model_probs, predict_labels
from uniseg.evaluate.sources import (
    RealSource,
    SyntheticSource,
    eval_source,
    renamed_labels,
    world_labels,
    world_maps,
)
from uniseg.metrics import confusion_matrix, iou_per_class, mean_iou
from uniseg.scores import Metrics


def test_confusion_matrix_and_iou_agree_with_torchmetrics():
    torch.manual_seed(0)
    n = 6
    pred = torch.randint(0, n, (4, 20, 30))
    target = torch.randint(0, n, (4, 20, 30))
    target[0, :5] = IGNORE
    conf = confusion_matrix(pred, target, n)
    assert conf.dtype == torch.float64 and conf.sum() == (target != IGNORE).sum()
    ref = MulticlassJaccardIndex(num_classes=n, average=None, ignore_index=IGNORE)(pred, target)
    assert torch.allclose(iou_per_class(conf).float(), ref, atol=1e-6)
    miou, count = mean_iou(conf)
    assert count == n and miou == pytest.approx(100 * float(ref.mean()), abs=1e-4)


def test_miou_skips_classes_absent_from_ground_truth_and_prediction():
    pred = torch.tensor([0, 0, 1, 1])
    target = torch.tensor([0, 0, 1, 0])
    conf = confusion_matrix(pred, target, 4)
    iou = iou_per_class(conf)
    assert torch.isnan(iou[2:]).all()
    miou, count = mean_iou(conf)
    assert count == 2 and miou == pytest.approx(100 * (2 / 3 + 1 / 2) / 2)


UNION = ["bicyclist", "car", "motorcyclist", "road", "sky"]


def test_restricted_argmax_never_predicts_a_class_outside_the_target_space():
    target = make_target(["road", "rider", "car"], UNION)
    assert target.resolution.missing == ("rider",)
    assert target.evaluated == ["road", "car"]
    probs = torch.zeros(1, len(UNION), 1, 3)
    probs[0, UNION.index("sky"), 0, :] = 0.9  # the union's favourite is not in the target space
    probs[0, UNION.index("car"), 0, 0] = 0.5
    probs[0, UNION.index("road"), 0, 1:] = 0.4
    pred = predict_labels(probs, target, "restricted")
    assert pred.tolist() == [[[1, 0, 0]]]  # compact indices: road = 0, car = 1


def test_merged_protocol_adds_contained_union_classes_into_the_target_class():
    union = ["bicyclist", "car", "motorcyclist", "rider", "road"]
    relations = [("M", "bicyclist", "rider"), ("M", "motorcyclist", "rider")]
    target = make_target(["road", "rider", "car"], union, relations=relations)
    probs = torch.zeros(1, len(union), 1, 1)
    probs[0, union.index("car"), 0, 0] = 0.5
    probs[0, union.index("rider"), 0, 0] = 0.2
    probs[0, union.index("bicyclist"), 0, 0] = 0.4
    assert predict_labels(probs, target, "restricted").item() == 2  # car
    assert predict_labels(probs, target, "merged").item() == 1  # rider: 0.2 + 0.4 > 0.5


def test_scorer_keeps_label_space_alignment_when_a_class_is_missing():
    target = make_target(["road", "rider", "car"], UNION)
    scorer = Scorer(target)
    probs = torch.zeros(1, len(UNION), 1, 3)
    probs[0, UNION.index("road"), 0, 0] = 1
    probs[0, UNION.index("car"), 0, 1:] = 1
    labels = torch.tensor([[[0, 1, 2]]], dtype=torch.uint8)  # road, rider (missing: not scored), car
    scorer.update(probs, labels)
    r = scorer.result()
    assert r.miou["restricted"] == 100.0 and r.classes["restricted"] == 2 and r.missing == ["rider"]


def test_a_test_space_with_no_class_in_the_union_is_a_clear_error():
    with pytest.raises(UserError, match="none of the test classes"):
        make_target(["tree", "lake"], UNION)


def test_cross_ground_truth_from_the_world_and_by_shared_names():
    from uniseg.datasets.synthetic import WORLD_CLASSES, load_policy, world_to_space_lut

    world = torch.tensor(
        [[WORLD_CLASSES.index("bicyclist"), WORLD_CLASSES.index("lane marking")]], dtype=torch.uint8
    )
    gt = world_labels(world_to_space_lut("cityscapes"))(torch.zeros(1, 1, 2, dtype=torch.uint8), [world])
    cs = load_policy("cityscapes").classes
    assert [cs[v] for v in gt[0, 0].tolist()] == ["rider", "road"]
    gt = renamed_labels(["road", "curb", "car"], ["car", "sidewalk", "road"])(
        torch.tensor([[0, 1, 2, IGNORE]]), []
    )
    assert gt.tolist() == [[2, IGNORE, 0, IGNORE]], "curb has no namesake: not scored"


def test_plan_covers_unseen_seen_cross_and_leave_one_out():
    tasks = plan_tasks(["a", "b"], ["k"], ["a", "b", "c"], cross=True, leave_one_out=["c"])
    names = [(t.group, t.name) for t in tasks]
    assert names == [
        ("unseen", "k"),
        ("unseen", "c"),
        ("seen", "a"),
        ("seen", "b"),
        ("cross", "a_in_b"),
        ("cross", "b_in_a"),
    ]


def test_merge_relations_from_the_synthetic_ground_truth():
    rows = eval_source("synthetic").relations(["cityscapes", "mapillary"])
    assert ("mapillary", "bicyclist", "rider") in rows
    assert all(len(r) == 3 for r in rows)


def test_the_real_source_renames_by_names_and_offers_no_readout_nor_headroom():
    import pandas as pd

    source = eval_source(
        "real", pd.DataFrame({"dataset": ["m"], "primary": ["bicyclist"], "secondary": ["rider"]})
    )
    assert isinstance(source, RealSource) and not source.reads_union
    assert source.readout("cityscapes", ["road", "rider"], UNION, ["cityscapes", "mapillary"]) is None
    assert source.headroom_classes(["cityscapes", "mapillary"], "kitti") is None
    assert source.relations(["m"]) == [("m", "bicyclist", "rider")]
    assert eval_source("real").relations(["m"]) == [], "no relabel table: no merged relations"
    gt = source.cross_truth("b", ["road", "curb", "car"], ["car", "sidewalk", "road"])
    assert gt(torch.tensor([[0, 1, 2]]), [], ["k"]).tolist() == [[2, IGNORE, 0]], "by shared names"
    with pytest.raises(UserError, match="unknown"):
        eval_source("imaginary")


def test_the_synthetic_source_reads_the_world():
    from uniseg.datasets.synthetic import WORLD_CLASSES, label_space, load_policy

    source = eval_source("synthetic")
    assert isinstance(source, SyntheticSource) and source.reads_union and source.readout_truth is world_maps
    world = torch.tensor([[WORLD_CLASSES.index("bicyclist")]], dtype=torch.uint8)
    labels = torch.zeros(1, 1, 1, dtype=torch.uint8)  # the own labels are not what cross truth reads
    cs = load_policy("cityscapes").classes
    gt = source.cross_truth("cityscapes", label_space("mapillary"), cs)(labels, [world], ["k"])
    assert cs[int(gt[0, 0, 0])] == "rider", "Mapillary's bicyclist is Cityscapes' rider in the world"
    train = ["cityscapes", "mapillary"]
    union = sorted(set(cs) | set(label_space("mapillary")))
    readout = source.readout("cityscapes", cs, union, train)
    assert readout is not None and "bicyclist" in [w for _, w in readout.worlds]
    headroom = source.headroom_classes(train, "kitti")  # the classes a true relation can move there
    assert "rider" in headroom and set(headroom) <= set(label_space("kitti"))


def test_sliding_window_equals_whole_image_for_a_pointwise_model():
    class Pointwise(torch.nn.Module):
        def forward(self, x):
            return torch.cat([x[:, :1] * 2, -x[:, :1]], 1)

    from uniseg.model.segmodel import ModelInfo

    info = ModelInfo(["a", "b"], "hrnet_w18_small", "cosine", 20.0, "nullbce", offset=-1.0)
    x = torch.randn(1, 3, 40, 70)
    whole = model_probs(Pointwise(), x, info)
    windowed = model_probs(Pointwise(), x, info, window=32)
    assert torch.allclose(whole, windowed, atol=1e-6)
    assert np.isfinite(windowed.numpy()).all()


def test_cross_ground_truth_equals_a_brute_force_relabelling_of_the_world():
    from uniseg.datasets.synthetic import WORLD_CLASSES, load_policy, world_to_space_lut

    rng = np.random.default_rng(0)
    world = torch.from_numpy(rng.integers(0, len(WORLD_CLASSES), (6, 9)).astype(np.uint8))
    policy = load_policy("cityscapes")
    gt = world_labels(world_to_space_lut("cityscapes"))(torch.zeros(1, 6, 9, dtype=torch.uint8), [world])[0]
    for y in range(6):
        for x in range(9):
            name = policy.labels[WORLD_CLASSES[int(world[y, x])]]
            expected = IGNORE if name is None else policy.classes.index(name)
            assert int(gt[y, x]) == expected


def test_merged_without_relations_equals_restricted():
    torch.manual_seed(0)
    target = make_target(["road", "car", "sky"], UNION)
    probs = torch.rand(2, len(UNION), 5, 5)
    assert torch.equal(predict_labels(probs, target, "merged"), predict_labels(probs, target, "restricted"))


def test_conflict_table_lists_the_largest_gaps_first():
    from uniseg.report.results import conflict_table

    metrics = {
        "base": {
            "seen": {"cityscapes": {"iou": {"rider": 60.0, "road": 90.0}}},
            "cross": {"mapillary_in_cityscapes": {"iou": {"rider": 20.0, "road": 88.0}}},
        }
    }
    lines = conflict_table(Metrics(metrics), {"base": "ce"})
    rows = [line for line in lines if line.startswith("| mapillary_in_cityscapes")]
    assert rows[0].startswith("| mapillary_in_cityscapes | rider | 60.0 / 20.0")


def test_a_kitti_shaped_image_is_scored_at_its_label_resolution(tmp_path):
    from PIL import Image

    from uniseg.datasets.layout import DatasetMeta, write_meta
    from uniseg.evaluate.evaluation import own_labels, score_images
    from uniseg.model.evalset import EvalSet, iter_batches, make_eval_loader
    from uniseg.model.segmodel import ModelInfo
    from uniseg.shards.packing import write_shards

    raw = tmp_path / "raw"
    (raw / "val").mkdir(parents=True)
    Image.new("RGB", (1242, 375), (100, 100, 100)).save(raw / "val" / "k0.png")
    label = np.zeros((375, 1242), dtype=np.uint8)
    label[:100] = 1
    Image.fromarray(label).save(raw / "val" / "k0.label.png")
    write_meta(raw, DatasetMeta("kitti", "real", ["road", "sky"], {"val": 1}))
    write_shards(raw, tmp_path / "shards", short_side=375, progress=False)

    class Constant(torch.nn.Module):
        def forward(self, x):
            assert x.shape[-2] == 96, "the model sees the resized image"
            out = torch.zeros(x.shape[0], 2, *x.shape[-2:])
            out[:, 0] = 1.0
            return out

    data = EvalSet(tmp_path / "shards", "val", height=96)
    info = ModelInfo(["road", "sky"], "hrnet_w18_small", "cosine", 20.0, "nullbce")
    target = make_target(data.classes, info.classes)
    scorers = score_images(
        Constant(), info, iter_batches(make_eval_loader(data, 1)), {"k": (Scorer(target), own_labels)}
    )
    conf = scorers["k"].conf["restricted"]
    assert conf.sum() == 375 * 1242
    assert conf[1, 0] == 100 * 1242


def test_unlearned_classes_are_listed():
    from uniseg.report.results import unlearned_classes

    metrics = {"base": {"seen": {"a": {"iou": {"rider": 0.0, "road": 90.0}}, "b": {"iou": {"rider": 0.0}}}}}
    lines = unlearned_classes(Metrics(metrics), {"base": "nullbce"})
    assert any(line.endswith(": rider") for line in lines)
    assert unlearned_classes(Metrics({"base": {"seen": {"a": {"iou": {"road": 1.0}}}}}), {}) == []


def test_results_embed_the_seeds_headline_when_there_is_one():
    from uniseg.report.results import results_markdown

    metrics = Metrics({"base": {"unseen": {"kitti": {"miou": 40.0}, "mean": 40.0}}})
    headline = "# Headline over seeds\n\nSeeds: 0, 1.\n\n| model | mean |\n|---|---|\n| ce | 36.8 |\n"
    text = results_markdown(metrics, {"base": "nullbce"}, ["cityscapes"], None, [], "restricted", headline)
    assert "| ce | 36.8 |" in text and "# Headline over seeds" not in text
    text = results_markdown(metrics, {"base": "nullbce"}, ["cityscapes"], None, [], "restricted")
    assert "none has been written yet" in text


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64])
def test_confusion_matrix_counts_every_chunk_of_a_large_batch(dtype):
    g = torch.Generator().manual_seed(1)
    n = 7
    pred = torch.randint(0, n, (3, 300, 401), generator=g)  # 360900 pixels: several chunks, a partial last
    target = torch.randint(0, n + 1, (3, 300, 401), generator=g)
    target[target == n] = IGNORE
    expected = torch.zeros(n, n, dtype=torch.float64)
    keep = target != IGNORE
    expected.view(-1).index_add_(
        0, target[keep] * n + pred[keep], torch.ones(int(keep.sum()), dtype=torch.float64)
    )
    assert torch.equal(confusion_matrix(pred, target.to(dtype), n), expected)


@pytest.mark.parametrize("loss", ["nullbce", "ce"])
def test_scoring_a_few_classes_at_a_time_predicts_as_the_full_maps(monkeypatch, loss):
    """Bounded memory at 1080p: ScoreMaps brings MAP_CHUNK classes at a time to label resolution; the
    predictions equal those from the probabilities of every class at once (restricted and merged)."""
    import uniseg.evaluate.protocols as protocols
    from uniseg.model.segmodel import ModelInfo, build_model

    torch.manual_seed(3)
    union = [f"c{i}" for i in range(11)]
    model = build_model("hrnet_w18_small", "cosine", len(union)).eval()
    info = ModelInfo(union, "hrnet_w18_small", "cosine", 20.0, loss, offset=-2.3 if loss != "ce" else 0.0)
    target = make_target(
        union[:7], union, relations=[("d", "c9", "c2"), ("d", "c10", "c2"), ("d", "c8", "c5")]
    )
    images = torch.randn(2, 3, 40, 56)
    with torch.inference_mode():
        full = protocols.upsample(model_probs(model, images, info), (50, 70))
        monkeypatch.setattr(protocols, "FULL_MAPS_LIMIT", 0)
        monkeypatch.setattr(protocols, "MAP_CHUNK", 3)
        maps = protocols.ScoreMaps(model, info, images, (50, 70))
        assert maps.full is None
        for protocol in ("restricted", "merged"):
            assert torch.equal(maps.predict(target, protocol), predict_labels(full, target, protocol)), (
                protocol
            )
        assert torch.allclose(maps.probs(torch.tensor([0, 4, 10])), full[:, [0, 4, 10]], atol=1e-6)


def test_a_set_with_negative_frames_is_scored_without_abstention_when_no_seen_split_gives_theta(tmp_path):
    """No seen split scored (evaluate.seen empty, or a model whose datasets are not among them): no θ, so
    WildDash 2 is scored as any set — once a crash, its negative frames' void labels sent to a plain scorer."""
    from PIL import Image

    from uniseg.datasets.layout import DatasetMeta, write_meta
    from uniseg.evaluate.evaluation import evaluate_model
    from uniseg.model.segmodel import ModelInfo
    from uniseg.params import parse_params
    from uniseg.shards.packing import write_shards

    raw = tmp_path / "raw"
    (raw / "val").mkdir(parents=True)
    label = np.zeros((32, 64), dtype=np.uint8)
    label[:8] = 1
    for key, lab in (("p0", label), ("n0", np.full((32, 64), 255, dtype=np.uint8))):
        Image.new("RGB", (64, 32), (90, 90, 90)).save(raw / "val" / f"{key}.png")
        Image.fromarray(lab).save(raw / "val" / f"{key}.label.png")
    write_meta(raw, DatasetMeta("wilddash2", "real", ["road", "sky"], {"val": 2}, negatives=["n0"]))
    write_shards(raw, tmp_path / "shards" / "wilddash2", short_side=32, progress=False)

    class Road(torch.nn.Module):  # road everywhere
        def forward(self, x):
            return torch.stack([torch.ones_like(x[:, 0]), torch.zeros_like(x[:, 0])], 1)

    p = parse_params(
        {
            "data": {"source": "real"},
            "evaluate": {"unseen": ["wilddash2"], "seen": [], "cross": False, "height": 32, "workers": 0},
        }
    )
    info = ModelInfo(["road", "sky"], "hrnet_w18_small", "cosine", 20.0, "ce", datasets=["cityscapes"])
    results, _, record = evaluate_model(Road(), info, p, tmp_path / "shards")
    (score,) = results.values()
    assert record["abstain_threshold"] is None and score.negative_void is None
    assert score.iou["restricted"]["road"] == 75.0, "24 of 32 rows are road; the negative frame is void"
