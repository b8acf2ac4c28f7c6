"""The torch-free lists of names (uniseg.names, what params.py validates against) match the registries
that implement them, so a new loss or backbone cannot be valid in params.yaml and unknown to the code."""

import importlib
import inspect

import pytest
import torch

from uniseg import names
from uniseg.errors import UserError
from uniseg.model import losses
from uniseg.model import segmodel as models


def test_the_loss_names_are_the_loss_registry():
    assert names.LOSSES == tuple(losses.LOSSES)


def test_base_losses_are_the_registered_losses_that_need_no_relations():
    assert names.BASE_LOSSES == tuple(n for n, spec in losses.LOSSES.items() if not spec.needs_relations)


@pytest.mark.parametrize("name", names.LOSSES)
def test_each_loss_does_what_its_traits_say(name):
    """`sigmoid`: the loss is not invariant to a shift of every logit (softmax is); `needs_relations`:
    a relation changes the loss, and without a relation table the loss refuses to build; a loss without
    that trait ignores relations."""
    spec = losses.LOSSES[name]
    union, spaces = ["bicyclist", "rider", "road"], {"a": ["rider", "road"], "b": ["bicyclist", "road"]}
    masks = losses.dataset_masks(union, list(spaces.values()))
    related = losses.relation_targets(union, spaces, [("b", "bicyclist", "rider")])
    unrelated = losses.relation_targets(union, spaces, [])
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(2, 3, 4, 4, generator=g), torch.randint(0, 2, (2, 4, 4), generator=g)
    ids = torch.tensor([0, 1])
    labels[1] = torch.where(labels[1] == 0, 0, 2)  # dataset b's own classes: bicyclist, road

    def value(targets, shift=0.0):
        total, count = losses.build_loss(name, masks, targets)(logits + shift, labels, ids)
        return float(total / count)

    assert (abs(value(related, 3.0) - value(related)) < 1e-5) is (not spec.sigmoid)
    assert (abs(value(related) - value(unrelated)) > 1e-5) is spec.needs_relations
    if spec.needs_relations:
        with pytest.raises(UserError):
            losses.build_loss(name, masks, None)


def test_models_validate_against_the_same_backbone_and_classifier_names():
    assert models.BACKBONES is names.BACKBONES and models.CLASSIFIERS is names.CLASSIFIERS
    source = inspect.getsource(models.build_model)
    assert "BACKBONES" in source and "CLASSIFIERS" in source


def test_params_module_stays_torch_free():
    import subprocess
    import sys

    code = "import sys, uniseg.params; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_every_backbone_name_is_built_by_its_family_module_and_every_family_names_its_backbones():
    from uniseg import identity
    from uniseg.model import backbones

    for name in names.BACKBONES:
        assert name in backbones.family(name).NAMES, name
    families = {identity.family(n) for n in names.BACKBONES}
    listed = set()
    for f in families:
        module = importlib.import_module(f"uniseg.model.backbones.{f}")
        listed |= set(module.NAMES)
    assert listed == set(names.BACKBONES)
    with pytest.raises(UserError, match="not one of"):
        backbones.family("hrnet_w99")
