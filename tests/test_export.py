"""`uniseg export` and `uniseg predict --runtime onnx`: a tiny random-weights model (hrnet_w18_small,
5 classes; cosine + Null BCE and linear + CE, so both score functions) exported to ONNX and run in ONNX
Runtime on the CPU against PyTorch — logits within export.TOLERANCE (scaled by max(1, max |logit|)) and
>= 99.9 % argmax agreement at a size that is a multiple of 32 and one that is not, batch 1 and 2 (the
graph was traced at batch 2 and another size); the metadata predict reads; predictions and the WildDash 2
submission through ONNX Runtime against PyTorch's; one-line errors for the wrong file or runtime."""

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from uniseg.cli import app
from uniseg.model.losses import sigmoid_prior
from uniseg.model.segmodel import ModelInfo, build_model, load_model_file, save_model_file

# Union names that WildDash 2's label space resolves (the submission test).
CLASSES = ["car", "lane marking - general", "road", "sidewalk", "sky"]
SIZES = [(64, 96), (50, 77)]  # (H, W): a multiple of 32, and one that is padded inside the graph
AGREEMENT = 0.999  # share of pixels whose argmax (or predicted label) must agree
LOSSES = {"cosine": "nullbce", "linear": "ce"}  # sigmoid(logits + offset) and softmax


def _model_file(folder: Path, classifier: str, backbone: str = "hrnet_w18_small") -> Path:
    torch.manual_seed(0)
    model = build_model(backbone, classifier, len(CLASSES))
    # BatchNorm away from the identity: the exporter folds it into the convolutions, which an untrained
    # BatchNorm (mean 0, variance 1, weight 1, bias 0) would not test.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
    loss = LOSSES[classifier]
    offset = sigmoid_prior(len(CLASSES)) if classifier == "cosine" else 0.0
    info = ModelInfo(CLASSES, backbone, classifier, 20.0, loss, ["cityscapes"], {}, offset)
    save_model_file(folder / f"{backbone}-{classifier}.pt", model, info)
    return folder / f"{backbone}-{classifier}.pt"


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """classifier -> (model file, ONNX file); the linear one through the CLI."""
    from uniseg.predict.export import export_model

    folder = tmp_path_factory.mktemp("export")
    files = {}
    for classifier in LOSSES:
        pt, onnx_file = _model_file(folder, classifier), folder / f"{classifier}.onnx"
        if classifier == "linear":
            result = CliRunner().invoke(app, ["export", "--model", str(pt), "--out", str(onnx_file)])
            assert result.exit_code == 0, result.output
            assert "opset 18" in result.output and "max |diff|" in result.output
        else:
            export_model(pt, onnx_file)
        files[classifier] = pt, onnx_file
    return files


@pytest.fixture(scope="module")
def loaded(exported) -> dict:
    """classifier -> (SegModel, OnnxModel), loaded once: a session takes a second to build."""
    from uniseg.predict.export import OnnxModel

    return {c: (load_model_file(pt)[0], OnnxModel(onnx_file)) for c, (pt, onnx_file) in exported.items()}


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("classifier", list(LOSSES))
def test_onnx_runtime_logits_match_pytorch(loaded, classifier, size, batch):
    from uniseg.predict.export import TOLERANCE

    model, onnx_model = loaded[classifier]
    x = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = model(x)
    got = onnx_model(x)
    assert got.shape == ref.shape == (batch, len(CLASSES), *size)
    diff = float((got - ref).abs().max())
    scale = max(1.0, float(ref.abs().max()))
    agreement = float((got.argmax(1) == ref.argmax(1)).float().mean())
    assert diff <= TOLERANCE * scale, f"max |onnx - torch| {diff:.3g}, logits up to {scale:.3g}"
    assert agreement >= AGREEMENT, f"argmax agreement {agreement:.5f}"


@pytest.mark.slow
def test_a_segformer_exports_and_onnx_runtime_matches_pytorch(tmp_path):
    """SegFormer (mit_b0): attention over a spatially reduced key grid whose size follows the input's."""
    from uniseg.predict.export import TOLERANCE, OnnxModel, export_model

    pt = _model_file(tmp_path, "cosine", backbone="mit_b0")
    export_model(pt, tmp_path / "mit.onnx")
    model, onnx_model = load_model_file(pt)[0], OnnxModel(tmp_path / "mit.onnx")
    for size in SIZES:
        x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            ref = model(x)
        got = onnx_model(x)
        assert got.shape == ref.shape
        assert float((got - ref).abs().max()) <= TOLERANCE * max(1.0, float(ref.abs().max()))
        assert float((got.argmax(1) == ref.argmax(1)).float().mean()) >= AGREEMENT


@pytest.mark.slow
def test_the_metadata_holds_what_predict_needs(exported):
    import onnx

    from uniseg.predict.export import OPSET, OnnxModel

    for classifier, (pt, onnx_file) in exported.items():
        proto = onnx.load(str(onnx_file))
        assert [(o.domain, o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [
            ("", OPSET)
        ]
        meta = {p.key: p.value for p in proto.metadata_props}
        _, info = load_model_file(pt)
        assert OnnxModel(onnx_file).info == info, "the whole ModelInfo round-trips"
        assert json.loads(meta["uniseg.classes"]) == CLASSES and meta["uniseg.output"] == "logits"
        assert meta["uniseg.opset"] == str(OPSET) and meta["uniseg.source"] == str(pt)
        if classifier == "cosine":
            assert meta["uniseg.score"] == "sigmoid" and float(meta["uniseg.offset"]) == info.offset
        else:
            assert meta["uniseg.score"] == "softmax"
        dims = [
            [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in (*proto.graph.input, *proto.graph.output)
        ]
        assert dims == [["batch", 3, "height", "width"], ["batch", len(CLASSES), "height", "width"]]


@pytest.fixture(scope="module")
def probs_graph(exported) -> Path:
    """The cosine model exported with --scores probs (the score function inside the graph)."""
    from uniseg.predict.export import export_model

    pt, onnx_file = exported["cosine"]
    return Path(export_model(pt, onnx_file.with_name("cosine-probs.onnx"), scores="probs")["out"])


@pytest.mark.slow
def test_a_probs_graph_gives_model_info_probs(exported, probs_graph):
    from uniseg.predict.export import OnnxModel

    model, info = load_model_file(exported["cosine"][0])
    x = torch.randn(2, 3, 50, 77, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        ref = info.probs(model(x))
    onnx_model = OnnxModel(probs_graph)
    assert onnx_model.output == "probs"
    assert float((onnx_model.probs(x) - ref).abs().max()) <= 1e-5


def _images(folder: Path) -> Path:
    """Three small smooth RGB images, (H, W) 64x96, 40x70 and 33x50."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    for k, (h, w) in enumerate([(64, 96), (40, 70), (33, 50)]):
        coarse = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((w, h), Image.Resampling.BILINEAR).save(folder / f"img{k}.png")
    return folder


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float((a == b).mean())


@pytest.mark.slow
@pytest.mark.parametrize("graph", ["logits", "probs"])
def test_predict_with_onnx_runtime_writes_what_pytorch_writes(tmp_path, exported, probs_graph, graph):
    from uniseg.predict.predictor import predict_paths

    pt, onnx_file = exported["cosine"]
    onnx_file = probs_graph if graph == "probs" else onnx_file
    images = _images(tmp_path / "images")
    runs = {"torch": (pt, tmp_path / "torch"), "onnx": (onnx_file, tmp_path / "onnx")}
    for runtime, (model, out) in runs.items():
        failures = predict_paths([images], model, out, abstain_threshold=0.3, runtime=runtime)
        assert failures == []
    for image in sorted(images.glob("*.png")):
        a, b = (np.asarray(Image.open(out / image.name)) for _, out in runs.values())
        assert _agreement(a, b) >= AGREEMENT, f"{image.name}: {_agreement(a, b):.5f} of pixels agree"
        assert (runs["onnx"][1] / f"{image.stem}.overlay.png").is_file()
    classes = [json.loads((out / "classes.json").read_text())["classes"] for _, out in runs.values()]
    assert classes[0] == classes[1] == CLASSES


@pytest.mark.slow
def test_a_submission_through_onnx_runtime_matches_pytorchs(tmp_path, exported):
    import shutil

    pt, onnx_file = exported["cosine"]
    # No --abstain-threshold: θ is the one recorded for the model file (by its stem; else the command
    # fails), which the exported file names in its metadata whatever the file is called.
    deployed = shutil.copy(onnx_file, tmp_path / "deployed.onnx")
    eval_dir = tmp_path / "eval"
    (eval_dir / pt.stem).mkdir(parents=True)
    (eval_dir / pt.stem / "details.json").write_text(json.dumps({"model": {"abstain_threshold": 0.3}}))
    images = _images(tmp_path / "images")
    zips = {}
    for runtime, model in (("torch", pt), ("onnx", deployed)):
        zips[runtime] = tmp_path / f"{runtime}.zip"
        args = [
            "predict",
            str(images),
            "--model",
            str(model),
            "--runtime",
            runtime,
            "--eval-dir",
            str(eval_dir),
        ]
        args += ["--label-space", "wilddash2", "--submission", str(zips[runtime])]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
    with zipfile.ZipFile(zips["torch"]) as a, zipfile.ZipFile(zips["onnx"]) as b:
        assert sorted(a.namelist()) == sorted(b.namelist()) == ["img0.png", "img1.png", "img2.png"]
        for name in a.namelist():
            pa, pb = (np.asarray(Image.open(z.open(name))) for z in (a, b))
            assert _agreement(pa, pb) >= AGREEMENT, name


def test_the_wrong_file_or_runtime_is_one_line(tmp_path):
    torch.manual_seed(0)
    model = build_model("hrnet_w18_small", "linear", 3)
    pt = tmp_path / "m.pt"
    save_model_file(pt, model, ModelInfo(["car", "road", "sky"], "hrnet_w18_small", "linear", 20.0, "ce"))
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    junk, junk_pt = tmp_path / "junk.onnx", tmp_path / "junk.pt"
    junk.write_bytes(b"not a graph")
    junk_pt.write_bytes(b"not a model")
    runner = CliRunner()
    cases = [
        (["export", "--model", str(junk_pt)], "not a uniseg model file"),
        (["export", "--model", str(pt), "--scores", "odds"], "--scores: unknown 'odds'"),
        (["export", "--model", str(pt), "--out", str(pt)], "is the model file itself"),
        (
            [
                "predict",
                str(tmp_path / "a.png"),
                "--model",
                str(pt),
                "--out",
                str(tmp_path / "o"),
                "--runtime",
                "onnx",
            ],
            "not an ONNX model file",
        ),  # fmt: skip
        (
            ["predict", str(tmp_path / "a.png"), "--model", str(junk), "--out", str(tmp_path / "o")],
            "an ONNX file; predict it with --runtime onnx",
        ),  # fmt: skip
        (
            [
                "predict",
                str(tmp_path / "a.png"),
                "--model",
                str(junk),
                "--out",
                str(tmp_path / "o"),
                "--runtime",
                "tensorrt",
            ],
            "--runtime: unknown runtime 'tensorrt'",
        ),  # fmt: skip
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and message in result.output, (args, result.output)
        assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists() and not (tmp_path / "m.onnx").exists(), "nothing written"
