"""The segmentation models (every backbone), their classifiers and the model file."""

import pickle

import pytest
import torch

from uniseg.errors import UserError
from uniseg.model.segmodel import ModelInfo, build_model, load_model_file, save_model_file
from uniseg.names import BACKBONES, CLASSIFIERS


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("classifier", CLASSIFIERS)
def test_every_backbone_and_classifier_runs_forward_and_backward(backbone, classifier):
    torch.manual_seed(0)
    model = build_model(backbone, classifier, num_classes=5, t=20.0)
    x = torch.randn(2, 3, 64, 96)
    out = model(x)
    assert out.shape == (2, 5, 64, 96)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


def test_cosine_logits_are_bounded_by_t_and_cosines_by_one():
    torch.manual_seed(0)
    model = build_model("hrnet_w18_small", "cosine", num_classes=7, t=20.0).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(1000)  # the bound does not depend on weight norms
        x = torch.randn(1, 3, 64, 64) * 10
        logits = model(x)
        cos = model.cosine(model.features(x))
    assert logits.abs().max() <= 20.0 + 1e-4
    assert cos.abs().max() <= 1.0 + 1e-6
    assert logits.abs().max() > 1.0


def test_linear_classifier_cosine_uses_normalised_features_and_weights():
    torch.manual_seed(0)
    model = build_model("hrnet_w18_small", "linear", num_classes=3).eval()
    feats = torch.randn(1, model.classifier.conv.in_channels, 2, 2)
    cos = model.cosine(feats)
    w = model.classifier.conv.weight.flatten(1)
    expected = torch.nn.functional.cosine_similarity(feats[0, :, 0, 0][None], w, dim=1)
    assert torch.allclose(cos[0, :, 0, 0], expected, atol=1e-6)


@pytest.mark.parametrize("backbone", ["hrnet_w18_small", "mit_b0"])
def test_model_file_round_trip_needs_no_params(tmp_path, backbone):
    torch.manual_seed(0)
    model = build_model(backbone, "cosine", num_classes=4, t=15.0).eval()
    info = ModelInfo(
        classes=["a", "b", "c", "d"], backbone=backbone, classifier="cosine", t=15.0, loss="nullbce"
    )
    save_model_file(tmp_path / "m.pt", model, info)
    loaded, info2 = load_model_file(tmp_path / "m.pt")
    assert info2 == info and info2.sigmoid
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x), atol=1e-5)


def test_the_same_weights_give_a_byte_identical_model_file(tmp_path):
    """dvc.lock must not change on an identical rerun: torch.save records the file's name inside the
    archive, so the temporary file of an atomic write must not be randomly named."""
    torch.manual_seed(0)
    model = build_model("hrnet_w18_small", "linear", num_classes=3)
    info = ModelInfo(["a", "b", "c"], "hrnet_w18_small", "linear", 20.0, "ce")
    save_model_file(tmp_path / "m.pt", model, info)
    first = (tmp_path / "m.pt").read_bytes()
    save_model_file(tmp_path / "m.pt", model, info)
    assert (tmp_path / "m.pt").read_bytes() == first
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"], "no temporary file is left behind"


def test_a_model_file_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "uniseg-model", "payload": Evil()}, path)
    with pytest.raises(
        UserError, match=r"not a uniseg model file \(torch.load cannot .*: UnpicklingError\)$"
    ):
        load_model_file(path)  # one line that names the file and the error, not torch's page on pickles
    path.write_bytes(pickle.dumps({"x": 1})[:5])
    with pytest.raises(UserError, match="not a uniseg model file"):
        load_model_file(path)
    with pytest.raises(UserError, match="not found"):
        load_model_file(tmp_path / "missing.pt")


def test_bad_names_and_missing_pretrained_files_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="valid: hrnet_w18_small, hrnet_w18, hrnet_w48"):
        build_model("resnet50", "cosine", 3)
    with pytest.raises(UserError, match="valid: linear, cosine"):
        build_model("hrnet_w18_small", "mlp", 3)
    with pytest.raises(UserError, match="is not a file"):
        build_model("hrnet_w18_small", "cosine", 3, pretrained=str(tmp_path / "nope.pth"))


def test_pretrained_weights_load_from_a_local_checkpoint(tmp_path):
    import timm

    torch.manual_seed(0)
    reference = timm.create_model("hrnet_w18_small", pretrained=False)
    torch.save(reference.state_dict(), tmp_path / "imagenet.pth")
    model = build_model("hrnet_w18_small", "cosine", 3, pretrained=str(tmp_path / "imagenet.pth"))
    assert torch.equal(model.encoder.conv1.weight, reference.conv1.weight)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="is not an ImageNet checkpoint"):
        build_model("hrnet_w18_small", "cosine", 3, pretrained=str(tmp_path / "junk.pth"))


FAULTS_SCRIPT = """
import resource, sys, torch
from uniseg.model.segmodel import tune_cpu

def faults(cycles=10):  # page faults of allocating, touching and freeing 64 MiB, as a step's logits are
    for _ in range(10):  # glibc's aligned allocations need a few freed blocks to merge before they fit
        torch.ones(16 * 2**20)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(cycles):
        torch.ones(16 * 2**20)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

first = faults()
tune_cpu()
print(first, faults())
"""


def test_tune_cpu_keeps_freed_memory_for_the_next_step():
    """Without it glibc unmaps a freed 64 MiB tensor and the next one faults in every page again (16384
    pages of 4 KiB, ten times over); after tune_cpu the heap keeps it (in a fresh process, to see both).
    The heap grows for the first few blocks, until freed ones have merged into one that fits an aligned
    64 MiB request; the ten measured come after ten such."""
    import subprocess
    import sys

    from uniseg.model.segmodel import _libc

    if _libc() is None:
        pytest.skip("the C library has no mallopt (not glibc): nothing to tune")
    out = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT], capture_output=True, text=True, check=True)
    before, after = map(int, out.stdout.split())
    assert before > 10 * 16384 // 2, f"the baseline did not fault as glibc's default does ({before})"
    assert after < before // 4, f"{after} page faults after tune_cpu (before: {before})"
