"""The torch-free lists of names (uniseg.names, what params.py validates against) match the registries
that implement them, so a new loss or backbone cannot be valid in params.yaml and unknown to the code."""

import inspect

from uniseg import losses, models, names


def test_the_loss_names_are_the_loss_registry():
    assert names.LOSSES == tuple(losses.LOSSES)


def test_base_losses_are_the_registered_losses_that_need_no_relations():
    assert names.BASE_LOSSES == tuple(n for n, spec in losses.LOSSES.items() if not spec.needs_relations)


def test_only_crbce_needs_relations_and_only_ce_is_softmax():
    assert [n for n, s in losses.LOSSES.items() if s.needs_relations] == ["crbce"]
    assert [n for n, s in losses.LOSSES.items() if not s.sigmoid] == ["ce"]


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
