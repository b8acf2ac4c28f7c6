"""The MiT family (SegFormer): MiT's sizes, both published weight layouts landing weight by weight, clear
errors, and a SegFormer that trains, mines relations and predicts like an HRNet."""

import pytest
import torch
from safetensors.torch import save_file

from uniseg.datasets.synthetic import generate_dataset
from uniseg.errors import UserError
from uniseg.model.backbones import create_encoder
from uniseg.model.segmodel import build_model, load_model_file
from uniseg.params import ModelParams, Params, SyntheticParams, TrainParams
from uniseg.relations.mining import mine_similarities, similarity_table
from uniseg.shards.packing import write_shards
from uniseg.train.engine import TrainJob, train_model

# MiT-B0 and B1 as the SegFormer paper and NVIDIA's code define them, written out here independently of
# the family module: depths, widths, spatial-reduction ratios; every stage's feed-forward 4x wide.
B0 = dict(depths=(2, 2, 2, 2), widths=(32, 64, 160, 256))
B1 = dict(depths=(2, 2, 2, 2), widths=(64, 128, 320, 512))
SR = (8, 4, 2, 1)


def _official_b(depths, widths) -> dict[str, torch.Tensor]:
    """A state dict in NVIDIA's mit_b*.pth layout (with its ImageNet classifier), random values."""
    g = torch.Generator().manual_seed(0)
    shapes, previous = {}, 3
    for s, (depth, c) in enumerate(zip(depths, widths, strict=True), start=1):
        k = 7 if s == 1 else 3
        shapes[f"patch_embed{s}.proj.weight"] = (c, previous, k, k)
        shapes[f"patch_embed{s}.proj.bias"] = (c,)
        shapes[f"patch_embed{s}.norm.weight"] = shapes[f"patch_embed{s}.norm.bias"] = (c,)
        for j in range(depth):
            b = f"block{s}.{j}"
            for norm in ("norm1", "norm2"):
                shapes[f"{b}.{norm}.weight"] = shapes[f"{b}.{norm}.bias"] = (c,)
            shapes[f"{b}.attn.q.weight"], shapes[f"{b}.attn.q.bias"] = (c, c), (c,)
            shapes[f"{b}.attn.kv.weight"], shapes[f"{b}.attn.kv.bias"] = (2 * c, c), (2 * c,)
            shapes[f"{b}.attn.proj.weight"], shapes[f"{b}.attn.proj.bias"] = (c, c), (c,)
            if SR[s - 1] > 1:
                r = SR[s - 1]
                shapes[f"{b}.attn.sr.weight"], shapes[f"{b}.attn.sr.bias"] = (c, c, r, r), (c,)
                shapes[f"{b}.attn.norm.weight"] = shapes[f"{b}.attn.norm.bias"] = (c,)
            shapes[f"{b}.mlp.fc1.weight"], shapes[f"{b}.mlp.fc1.bias"] = (4 * c, c), (4 * c,)
            shapes[f"{b}.mlp.dwconv.dwconv.weight"] = (4 * c, 1, 3, 3)
            shapes[f"{b}.mlp.dwconv.dwconv.bias"] = (4 * c,)
            shapes[f"{b}.mlp.fc2.weight"], shapes[f"{b}.mlp.fc2.bias"] = (c, 4 * c), (c,)
        shapes[f"norm{s}.weight"] = shapes[f"norm{s}.bias"] = (c,)
        previous = c
    shapes["head.weight"], shapes["head.bias"] = (1000, widths[-1]), (1000,)
    return {k: torch.randn(shape, generator=g) for k, shape in shapes.items()}


def _hugging_face(official: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same tensors in Hugging Face's nvidia/mit-b* layout (SegformerForImageClassification): names
    as its conversion script writes them, keys and values as two matrices."""
    out = {}
    for key, v in official.items():
        s, rest = key.split(".", 1)
        if key.startswith("head."):
            out[f"classifier.{rest}"] = v
        elif s.startswith("patch_embed"):
            out[
                f"segformer.encoder.patch_embeddings.{int(s[-1]) - 1}.{rest.replace('norm', 'layer_norm')}"
            ] = v
        elif s.startswith("norm"):
            out[f"segformer.encoder.layer_norm.{int(s[-1]) - 1}.{rest}"] = v
        else:
            j, part = rest.split(".", 1)
            for a, b in [
                ("norm1", "layer_norm_1"),
                ("norm2", "layer_norm_2"),
                ("attn.q.", "attention.self.query."),
                ("attn.proj.", "attention.output.dense."),
                ("attn.sr.", "attention.self.sr."),
                ("attn.norm.", "attention.self.layer_norm."),
                ("mlp.fc1.", "mlp.dense1."),
                ("mlp.fc2.", "mlp.dense2."),
            ]:
                part = part.replace(a, b)
            prefix = f"segformer.encoder.block.{int(s[-1]) - 1}.{j}."
            if part.startswith("attn.kv."):
                kind, half = part.rsplit(".", 1)[1], v.shape[0] // 2
                out[prefix + f"attention.self.key.{kind}"] = v[:half]
                out[prefix + f"attention.self.value.{kind}"] = v[half:]
            else:
                out[prefix + part] = v
    return out


def _landed(encoder, official):
    """Every encoder tensor is one of the checkpoint's (all but its classifier), each used once, and
    sample names land where NVIDIA's code reads them."""
    mine = encoder.state_dict()
    theirs = {k: v for k, v in official.items() if not k.startswith("head.")}
    assert len(mine) == len(theirs)
    used = set()
    for name, value in mine.items():
        hits = [k for k, v in theirs.items() if v.shape == value.shape and torch.equal(v, value)]
        assert len(hits) == 1, name
        used.add(hits[0])
    assert used == set(theirs)
    pairs = {
        "patch_embed1.proj.weight": "patch_embed.proj.weight",
        "patch_embed3.norm.bias": "stages_2.downsample.norm.bias",
        "block2.1.norm2.weight": "stages_1.blocks.1.norm2.weight",
        "block1.0.attn.kv.weight": "stages_0.blocks.0.attn.kv.weight",
        "block3.1.attn.sr.weight": "stages_2.blocks.1.attn.sr.weight",
        "block4.0.mlp.dwconv.dwconv.weight": "stages_3.blocks.0.mlp.dwconv.weight",
        "norm4.bias": "stages_3.norm.bias",
    }
    for theirs_name, mine_name in pairs.items():
        assert torch.equal(official[theirs_name], mine[mine_name]), theirs_name


@pytest.mark.parametrize(("backbone", "published"), [("mit_b0", 3.3e6), ("mit_b4", 61e6)])
def test_encoder_sizes_are_the_published_ones(backbone, published):
    encoder = create_encoder(backbone, "none")
    assert abs(sum(p.numel() for p in encoder.parameters()) / published - 1) < 0.01
    assert list(encoder.feature_info.reduction()) == [4, 8, 16, 32]


@pytest.mark.parametrize(("backbone", "width"), [("mit_b0", 256), ("mit_b1", 256), ("mit_b2", 768)])
def test_the_decode_head_is_as_wide_as_segformer_s(backbone, width):
    model = build_model(backbone, "cosine", 5)
    assert model.head.channels == width and model.classifier.weight.shape == (5, width)


def test_nvidia_s_mit_checkpoint_lands_weight_by_weight(tmp_path):
    official = _official_b(**B0)
    torch.save(official, tmp_path / "mit_b0.pth")
    _landed(create_encoder("mit_b0", str(tmp_path / "mit_b0.pth")), official)
    # an mmsegmentation training checkpoint holds it under state_dict and backbone.
    wrapped = {"state_dict": {f"backbone.{k}": v for k, v in official.items()}, "meta": {}}
    torch.save(wrapped, tmp_path / "mmseg.pth")
    _landed(create_encoder("mit_b0", str(tmp_path / "mmseg.pth")), official)


@pytest.mark.parametrize("suffix", [".bin", ".safetensors"])
def test_hugging_face_s_mit_weights_land_weight_by_weight(tmp_path, suffix):
    official = _official_b(**B0)
    path = tmp_path / f"model{suffix}"
    if suffix == ".bin":
        torch.save(_hugging_face(official), path)
    else:
        save_file(_hugging_face(official), path)
    _landed(create_encoder("mit_b0", str(path)), official)


def test_a_checkpoint_of_another_size_or_kind_is_a_clear_error(tmp_path):
    torch.save(_official_b(**B1), tmp_path / "mit_b1.pth")
    with pytest.raises(UserError, match=r"mit_b1\); model.backbone is mit_b0"):
        create_encoder("mit_b0", str(tmp_path / "mit_b1.pth"))
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "resnet.pth")
    with pytest.raises(UserError, match="not a MiT checkpoint"):
        create_encoder("mit_b0", str(tmp_path / "resnet.pth"))
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        create_encoder("mit_b0", str(tmp_path / "junk.pth"))
    with pytest.raises(UserError, match="timm's hub has no ImageNet weights for mit_b0.*nvidia/mit-b0"):
        create_encoder("mit_b0", "timm")


DATASETS = ["cityscapes", "mapillary"]


def test_a_segformer_trains_mines_relations_and_reloads_from_its_model_file(tmp_path):
    synthetic = SyntheticParams(seed=0, height=64, width=64, train_images=4, val_images=1)
    for d in DATASETS:
        generate_dataset(d, tmp_path / "raw" / d, synthetic)
        write_shards(tmp_path / "raw" / d, tmp_path / "shards" / d, 64, progress=False)
    p = Params(
        loss="nullbce",
        model=ModelParams(backbone="mit_b0", classifier="cosine", pretrained="none"),
        train=TrainParams(datasets=DATASETS, iters=3, batch_size=2, crop=[64, 64], workers=0, log_every=1),
        seed=0,
    )
    job = TrainJob.from_params(p, tmp_path / "shards", tmp_path / "m.pt", log_dir=tmp_path / "log")
    summary = train_model(job, progress=False)
    assert summary["iterations"] == 3 and summary["final_loss"] > 0
    model, info = load_model_file(tmp_path / "m.pt")
    assert info.backbone == "mit_b0" and not model.training
    k = len(info.classes)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(2, 3, 64, 64, generator=g), torch.randint(0, k, (2, 64, 64), generator=g))]
    acc = mine_similarities(model, batches, k)
    table = similarity_table({"cityscapes": acc}, info.classes, {"cityscapes": info.classes})
    assert len(table) and table["similarity"].between(-1, 1).all()
    with torch.no_grad():
        assert torch.equal(model(batches[0][0]), model(batches[0][0])), "eval mode: no dropout"
