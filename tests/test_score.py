"""`uniseg score`: predictions scored as the evaluate stage scores a model (predict -> score gives its
confusion matrices exactly), class mIoU as the official Cityscapes evaluator computes it, the three id
conventions, and bad input as one line naming the file with nothing written."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from uniseg import IGNORE, taxonomy
from uniseg.errors import DataError, UserError
from uniseg.metrics import mean_iou
from uniseg.predict.score import prediction_lut, score_predictions

ROOT = Path(__file__).resolve().parents[1]
TEST_SETS = ("kitti", "camvid", "wilddash2")


# --- predict -> score equals the evaluate stage ----------------------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Tiny synthetic shards (Cityscapes' seen val split gives θ; three test sets, WildDash 2 with a negative
    frame), an untrained model whose union lacks fence (not scored on KITTI and CamVid; scored as never
    predicted on WildDash 2), the evaluate stage's results for it and its exact θ."""
    from uniseg.datasets.layout import read_meta
    from uniseg.datasets.synthetic import generate_dataset
    from uniseg.evaluate.abstain import BINS
    from uniseg.evaluate.evaluation import evaluate_model
    from uniseg.model.segmodel import ModelInfo, build_model, load_model_file, save_model_file
    from uniseg.params import EvaluateParams, Params, SyntheticParams
    from uniseg.shards.packing import write_shards

    root = tmp_path_factory.mktemp("score")
    synthetic = SyntheticParams(
        height=64, width=128, train_images=1, val_images=1, test_images=2, negative_images=1
    )
    for name in ("cityscapes", *TEST_SETS):
        generate_dataset(name, root / "raw" / name, synthetic)
        write_shards(root / "raw" / name, root / "shards" / name, 64, progress=False)
    torch.manual_seed(0)
    union = sorted({*read_meta(root / "shards" / "cityscapes").classes, "bicyclist"} - {"fence"})
    info = ModelInfo(
        union, "hrnet_w18_small", "cosine", 20.0, "nullbce", datasets=["cityscapes"], offset=-2.9
    )
    save_model_file(root / "m.pt", build_model("hrnet_w18_small", "cosine", len(union)), info)
    model, info = load_model_file(root / "m.pt")
    p = Params(
        evaluate=EvaluateParams(
            unseen=list(TEST_SETS), seen=["cityscapes"], height=64, cross=False, batch_size=1, workers=0
        )
    )
    results, _, record = evaluate_model(model, info, p, root / "shards")
    scores = {task.name: r for task, r in results.items() if task.group == "unseen"}
    theta = round(record["abstain_threshold"] * (BINS - 1)) / (BINS - 1)  # the recorded θ is rounded
    return root, scores, theta


def _images(root: Path, name: str) -> list[Path]:
    """The images of a synthetic dataset's val split (not its label and world files), as a user lists them."""
    return [f for f in sorted((root / "raw" / name / "val").glob("*.png")) if "." not in f.stem]


def _predict(root: Path, name: str, out: Path, **options) -> Path:
    from uniseg.predict.predictor import predict_paths

    failures = predict_paths(_images(root, name), root / "m.pt", out, **options)
    assert not failures
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", TEST_SETS)
def test_predict_output_scores_exactly_as_the_evaluate_stage(project, tmp_path, name):
    root, scores, _ = project
    predictions = _predict(root, name, tmp_path / name, label_space=name)
    result = score_predictions(name, predictions, root / "shards", model=root / "m.pt")
    expected = np.array(scores[name].confusion["restricted"])
    confusion = np.array(result["confusion"])
    assert np.array_equal(confusion[:, :-1], expected) and confusion[:, -1].sum() == 0
    assert result["mean_iou"]["present"] == mean_iou(torch.tensor(expected))[0]
    assert round(result["mean_iou"]["present"], 1) == scores[name].miou["restricted"]
    assert result["classes_present"] == scores[name].classes["restricted"]
    assert result["images"] == len(_images(root, name))
    if name == "wilddash2":  # the benchmark's rule: classes the union lacks score 0 where they occur
        assert "fence" in result["iou"] and result["not_scored"] == []
    else:
        assert "fence" not in result["iou"] and result["not_scored"] == ["fence"]


@pytest.mark.slow
def test_abstained_pixels_score_as_the_abstain_protocol(project, tmp_path):
    root, scores, theta = project
    predictions = _predict(
        root, "wilddash2", tmp_path / "p", label_space="wilddash2", abstain_threshold=theta
    )
    result = score_predictions("wilddash2", predictions, root / "shards", model=root / "m.pt")
    expected = np.array(scores["wilddash2"].confusion["abstain"])
    assert result["void_pixels"] > 0, "θ leaves some labelled pixels void"
    assert np.array_equal(np.array(result["confusion"]), expected[:-1]), "void is the last column, a miss"
    assert round(result["mean_iou"]["present"], 1) == scores["wilddash2"].miou["abstain"]


@pytest.mark.slow
def test_union_and_official_ids_score_as_the_label_space_indices(project, tmp_path):
    """The same predictions written as KITTI label-space indices (Cityscapes trainIds), as the model's
    union indices and as Cityscapes labelIds (KITTI's official ids) give the same score."""
    root, _, _ = project
    space = _predict(root, "kitti", tmp_path / "space", label_space="kitti")
    union_dir = _predict(root, "kitti", tmp_path / "union")  # no label space: the union's argmax
    classes = taxonomy.label_space("kitti")
    union = json.loads((union_dir / "classes.json").read_text())["classes"]
    to_union = np.full(256, IGNORE, dtype=np.uint8)
    to_union[: len(classes)] = [union.index(c) if c in union else IGNORE for c in classes]
    labelids = np.full(
        256, IGNORE, dtype=np.uint8
    )  # each class's lowest labelId: what the official files hold
    for value, k in sorted(enumerate(taxonomy.raw_lut("kitti").tolist()), reverse=True):
        if 0 <= k < len(classes):
            labelids[k] = value
    for folder, lut in ((tmp_path / "as-union", to_union), (tmp_path / "as-official", labelids)):
        folder.mkdir()
        for png in space.glob("*[0-9].png"):
            Image.fromarray(lut[np.asarray(Image.open(png))]).save(folder / png.name)
    reference = score_predictions("kitti", space, root / "shards", model=root / "m.pt")
    as_union = score_predictions(
        "kitti", tmp_path / "as-union", root / "shards", ids="union", model=root / "m.pt"
    )
    as_official = score_predictions("kitti", tmp_path / "as-official", root / "shards", ids="official", model=root / "m.pt")  # fmt: skip
    for other in (as_union, as_official):
        assert other["confusion"] == reference["confusion"] and other["mean_iou"] == reference["mean_iou"]
    # predict's union output names its union (classes.json): --ids union needs nothing more
    argmax = score_predictions("kitti", union_dir, root / "shards", ids="union")
    assert argmax["union"] == str(union_dir / "classes.json") and argmax["images"] == 2
    # without a model every class of the label space is scored, fence too (never predicted: 0 or absent)
    unrestricted = score_predictions("kitti", space, root / "shards")
    assert len(unrestricted["iou"]) == len(classes) and unrestricted["iou"]["fence"] in (0.0, None)
    with pytest.raises(UserError, match="these are union indices; score them with --ids union"):
        score_predictions("kitti", union_dir, root / "shards")
    with pytest.raises(
        UserError, match="uniseg predict wrote kitti indices here, not official ids; use --ids space"
    ):
        score_predictions("kitti", space, root / "shards", ids="official")


def test_union_classes_reach_the_label_space_by_name_with_its_fallbacks():
    """CamVid's bicyclist is scored through the union's rider when the union has no bicyclist; a union
    class outside CamVid's space is void (a miss); 255 is void; an index past the union is unknown."""
    from uniseg.predict.score import Truth

    camvid = taxonomy.dataset_info("camvid")
    truth = Truth("camvid", list(camvid.classes), dict(camvid.fallbacks), Path("."), [])
    union = ["building", "car", "rider", "road", "terrain"]
    lut = prediction_lut("union", "camvid", truth, union)
    assert [lut[i] for i in range(len(union))] == [
        camvid.classes.index("building"),
        camvid.classes.index("car"),
        camvid.classes.index("bicyclist"),
        camvid.classes.index("road"),
        IGNORE,
    ]
    assert lut[IGNORE] == IGNORE and lut[len(union)] == -1


def test_official_ids_go_through_the_datasets_label_table():
    from uniseg.predict.score import Truth

    classes = taxonomy.label_space("kitti")
    lut = prediction_lut("official", "kitti", Truth("kitti", classes, {}, Path("."), []))
    assert lut[26] == classes.index("car") and lut[7] == classes.index("road"), "Cityscapes labelIds"
    assert lut[0] == IGNORE and lut[1] == IGNORE, "ids the table ignores are void: a miss where labelled"
    assert lut[34] == -1, "not a labelId"
    camvid = taxonomy.label_space("camvid")
    lut = prediction_lut("official", "camvid", Truth("camvid", camvid, {}, Path("."), []))
    assert lut[:11].tolist() == list(range(11)) and lut[11] == -1, "CamVid-11's ids are its label space"


# --- the official Cityscapes evaluator --------------------------------------------------------------------


def _street(rng: np.random.Generator, h: int = 48, w: int = 96) -> np.ndarray:
    """A street scene in Cityscapes labelIds: sky over buildings and vegetation, road and sidewalk below,
    cars, people, poles and signs, the ego vehicle and unlabelled pixels (ignored in evaluation)."""
    label = np.full((h, w), 23, dtype=np.uint8)  # sky
    x = 0
    while x < w:  # a skyline of buildings and trees
        width = int(rng.integers(6, 20))
        label[int(rng.integers(h // 8, h // 3)) :, x : x + width] = rng.choice([11, 11, 21])
        x += width
    horizon = h // 2 + int(rng.integers(-3, 4))
    label[horizon:] = 7  # road
    label[horizon:, : w // 6] = 8  # sidewalk
    if rng.random() < 0.5:
        label[horizon : horizon + 4, w - w // 5 :] = 22  # terrain
    for _ in range(int(rng.integers(1, 4))):
        y, x = int(rng.integers(horizon - 4, h - 12)), int(rng.integers(0, w - 16))
        label[y : y + int(rng.integers(5, 10)), x : x + int(rng.integers(8, 16))] = 26  # car
    for _ in range(int(rng.integers(0, 3))):
        y, x = int(rng.integers(horizon - 10, horizon)), int(rng.integers(0, w - 3))
        label[y : y + 10, x : x + 3] = rng.choice([24, 25])  # person, rider
    x = int(rng.integers(w // 6, w - 2))
    label[h // 4 : horizon + 2, x : x + 1] = 17  # pole
    label[h // 4 : h // 4 + 3, x - 1 : x + 2] = 20  # its sign
    label[h - 4 :] = 1  # ego vehicle
    label[rng.random((h, w)) < 0.01] = 0  # unlabelled
    return label


def _predicted(rng: np.random.Generator, truth: np.ndarray) -> np.ndarray:
    """A plausible prediction in labelIds: the truth shifted by a pixel or two, with wrong blobs (some of
    a class the image lacks, some of ids Cityscapes ignores in evaluation: misses)."""
    pred = np.roll(truth, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(0, 1))
    for _ in range(6):
        y, x = int(rng.integers(0, pred.shape[0] - 6)), int(rng.integers(0, pred.shape[1] - 8))
        pred[y : y + int(rng.integers(2, 6)), x : x + int(rng.integers(3, 8))] = rng.choice(
            [7, 8, 11, 21, 26, 31, 0, 6, 4]  # 31 train: never in the truth; 0, 6, 4: ignored ids
        )
    return pred


def test_class_miou_equals_the_official_cityscapes_evaluator(tmp_path, monkeypatch):
    official = pytest.importorskip("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")
    rng = np.random.default_rng(0)
    root, predictions = tmp_path / "cityscapes", tmp_path / "results"
    predictions.mkdir()
    listed, pred_files, gt_files = [], [], []
    for city, k in (("aachen", 0), ("aachen", 1), ("bremen", 2), ("bremen", 3)):
        stem = f"{city}_{k:06d}_000019"
        image = root / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png"
        label = root / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        label.parent.mkdir(parents=True, exist_ok=True)
        truth = _street(rng)
        Image.new("RGB", truth.shape[::-1], (90, 90, 90)).save(image)
        Image.fromarray(truth).save(label)
        Image.fromarray(_predicted(rng, truth)).save(predictions / f"{stem}_leftImg8bit.png")
        listed.append(image.relative_to(root).as_posix())
        pred_files.append(str(predictions / f"{stem}_leftImg8bit.png"))
        gt_files.append(str(label))
    (root / "splits").mkdir()
    (root / "splits" / "val.txt").write_text("\n".join(listed) + "\n")  # not the shipped 500-image list

    result = score_predictions("cityscapes", predictions, ground_truth=root, ids="official")

    for key, value in dict(
        quiet=True, JSONOutput=False, evalInstLevelScore=False, evalPixelAccuracy=False
    ).items():
        monkeypatch.setattr(official.args, key, value)
    reference = official.evaluateImgLists(pred_files, gt_files, official.args)
    assert result["images"] == 4 and result["void_pixels"] > 0
    assert result["mean_iou"]["present"] == pytest.approx(100 * reference["averageScoreClasses"], abs=1e-4)
    for name, iou in result["iou"].items():
        theirs = reference["classScores"][name]
        assert (iou is None and np.isnan(theirs)) or iou == pytest.approx(100 * theirs, abs=1e-4), name
    assert result["iou"]["train"] == 0.0 and result["iou"]["bus"] is None, "predicted only; in neither"
    present = [v for v in result["iou"].values() if v is not None]
    assert result["mean_iou"]["all"] == pytest.approx(sum(present) / 19), "MSeg: absent classes count 0"


# --- bad input ----------------------------------------------------------------------------------------


@pytest.fixture
def perfect(tmp_path):
    """Synthetic KITTI ground truth (two 64x32 images, shards and the canonical layout) and predictions
    equal to it."""
    from uniseg.datasets.synthetic import generate_dataset
    from uniseg.params import SyntheticParams
    from uniseg.shards.packing import write_shards

    raw, shards = tmp_path / "raw" / "kitti", tmp_path / "shards"
    generate_dataset("kitti", raw, SyntheticParams(height=32, width=64, test_images=2))
    write_shards(raw, shards / "kitti", 32, progress=False)
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    for label in sorted((raw / "val").glob("*.label.png")):
        shutil.copy(label, predictions / label.name.replace(".label", ""))
    return shards, predictions


def test_perfect_predictions_score_100_from_shards_or_the_layout(perfect):
    shards, predictions = perfect
    result = score_predictions("kitti", predictions, shards)
    assert result["mean_iou"]["present"] == 100.0 and result["images"] == 2
    assert score_predictions("kitti", predictions, ground_truth=shards.parent / "raw" / "kitti") == {
        **result,
        "ground_truth": str(shards.parent / "raw" / "kitti"),
    }


def test_palette_predictions_are_read_by_their_indices(perfect):
    shards, predictions = perfect
    for png in predictions.glob("*.png"):
        img = Image.fromarray(np.asarray(Image.open(png)), mode="P")
        img.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
        img.save(png)
    assert score_predictions("kitti", predictions, shards)["mean_iou"]["present"] == 100.0


def _first(folder: Path) -> Path:
    return sorted(folder.glob("*.png"))[0]


def _missing(p: Path) -> str:
    sorted(p.glob("*.png"))[-1].unlink()
    return r"kitti_val_00001\.png: missing; 1 of the 2 images of kitti"


def _extra(p: Path) -> str:
    shutil.copy(_first(p), p / "stray.png")
    return r"stray\.png: not an image of kitti's val split"


def _label_file(p: Path) -> str:
    shutil.copy(_first(p), p / "kitti_val_00000.label.png")
    return r"kitti_val_00000\.label\.png: .*give uniseg predict the images only"


def _size(p: Path) -> str:
    Image.open(_first(p)).resize((63, 32)).save(_first(p))
    return r"kitti_val_00000\.png: size 63x32 differs from the ground truth's 64x32"


def _outside(p: Path) -> str:
    label = np.asarray(Image.open(_first(p))).copy()
    label[3, 4] = 19  # KITTI's space has 19 classes: 0-18
    Image.fromarray(label).save(_first(p))
    return r"kitti_val_00000\.png: id 19 is not a space id of kitti; valid: 0-18"


def _unreadable(p: Path) -> str:
    _first(p).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return r"kitti_val_00000\.png: cannot be decoded"


def _colour(p: Path) -> str:
    Image.open(_first(p)).convert("RGB").save(_first(p))
    return r"kitti_val_00000\.png: a RGB image; a prediction is single-channel label ids"


@pytest.mark.parametrize(
    "damage",
    [_missing, _extra, _label_file, _size, _outside, _unreadable, _colour],
    ids=lambda f: f.__name__[1:],
)
def test_bad_predictions_are_one_error_naming_the_file(perfect, damage):
    shards, predictions = perfect
    message = damage(predictions)
    with pytest.raises(DataError, match=message) as info:
        score_predictions("kitti", predictions, shards)
    assert "\n" not in str(info.value)


def test_overlays_and_other_files_beside_the_predictions_are_passed_over(perfect):
    shards, predictions = perfect
    shutil.copy(_first(predictions), predictions / "kitti_val_00000.overlay.png")
    (predictions / "classes.json").write_text(json.dumps({"classes": [], "label_space": "kitti"}))
    assert score_predictions("kitti", predictions, shards)["mean_iou"]["present"] == 100.0
    (predictions / "classes.json").write_text(json.dumps({"classes": [], "label_space": "camvid"}))
    with pytest.raises(UserError, match="predicted in camvid's label space, not kitti's"):
        score_predictions("kitti", predictions, shards)


def _score_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "uniseg.cli", "score", *args], capture_output=True, text=True, cwd=ROOT
    )


@pytest.mark.slow
def test_the_cli_prints_a_table_writes_json_and_on_bad_input_one_line_and_nothing(perfect, tmp_path):
    shards, predictions = perfect
    out = tmp_path / "score.json"
    args = [
        "--dataset",
        "kitti",
        "--predictions",
        str(predictions),
        "--shards",
        str(shards),
        "--out",
        str(out),
    ]
    proc = _score_cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert "| class | IoU |" in proc.stdout and "| road | 100.0 |" in proc.stdout
    assert json.loads(out.read_text())["mean_iou"]["present"] == 100.0
    out.unlink()
    _colour(predictions)
    proc = _score_cli(*args)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: ") and "RGB" in lines[0]
    assert not out.exists() and not list(tmp_path.glob(".score.json*")), "nothing half-written"


def test_predict_resolves_a_label_space_with_its_fallbacks_as_evaluation_does():
    """A union without bicyclist (no Mapillary) scores CamVid's bicyclist through rider in the evaluate
    stage; `uniseg predict --label-space camvid` must resolve it the same way, or predict -> score
    differs from evaluate."""
    from uniseg import taxonomy
    from uniseg.evaluate.protocols import make_target
    from uniseg.predict.predictor import _space

    union = taxonomy.union(taxonomy.label_space(d) for d in ("cityscapes", "idd", "bdd"))
    assert "bicyclist" not in union
    classes, fallbacks = _space("camvid", union)
    assert fallbacks == {"bicyclist": "rider"}
    predicted = make_target(classes, union, fallbacks).resolution
    evaluated = make_target(classes, union, taxonomy.dataset_info("camvid").fallbacks).resolution
    assert predicted == evaluated and "bicyclist" in predicted.fallbacks_used
