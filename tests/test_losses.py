"""The losses against the paper's claims (eqs. 2-5, 8) and a slow, obviously-correct reference."""

import pytest
import torch
import torch.nn.functional as F

from uniseg import IGNORE
from uniseg.errors import DataError, UserError
from uniseg.model.losses import (
    LOSSES,
    NULL,
    POS,
    build_loss,
    dataset_masks,
    normalise_loss,
    relation_targets,
)

# Two datasets whose label spaces conflict: A calls riders "rider", B calls them "bicyclist".
UNION = ["bicyclist", "car", "rider", "road"]
SPACES = {"A": ["car", "rider", "road"], "B": ["bicyclist", "car", "road"]}
RIDER, BICYCLIST = UNION.index("rider"), UNION.index("bicyclist")


def _masks():
    return dataset_masks(UNION, list(SPACES.values()))


def _grad(name, logits, labels, ids, targets=None):
    logits = logits.clone().requires_grad_(True)
    total, count = build_loss(name, _masks(), targets)(logits, labels, ids)
    (total / count).backward()
    return logits.grad


def test_ce_gradients_conflict_and_nullbce_removes_the_conflict():
    """Eqs. 2-5: the same rider pixel labelled 'rider' by A and 'bicyclist' by B."""
    logits = torch.randn(1, len(UNION), 2, 2).repeat(2, 1, 1, 1)  # two identical images
    labels = torch.stack([torch.full((2, 2), RIDER), torch.full((2, 2), BICYCLIST)])
    ids = torch.tensor([0, 1])
    g = _grad("ce", logits, labels, ids)
    assert (g[0, RIDER] < 0).all(), "A pushes the rider logit up"
    assert (g[1, RIDER] > 0).all(), "under CE, B pushes the same logit down: the conflict"
    g = _grad("nullbce", logits, labels, ids)
    assert (g[0, RIDER] < 0).all()
    assert (g[1, RIDER] == 0).all(), "under Null BCE, B's image gives rider exactly zero gradient"
    assert (g[0, BICYCLIST] == 0).all()


def test_nullbce_gives_classes_outside_the_dataset_exactly_zero_gradient():
    torch.manual_seed(0)
    logits = torch.randn(4, len(UNION), 5, 6)
    ids = torch.tensor([0, 1, 0, 1])
    masks = _masks()
    labels = torch.empty(4, 5, 6, dtype=torch.long)
    for b, d in enumerate(ids.tolist()):
        own = masks[d].nonzero().flatten()
        labels[b] = own[torch.randint(len(own), (5, 6))]
    labels[0, 0, :3] = IGNORE
    g = _grad("nullbce", logits, labels, ids)
    for b, d in enumerate(ids.tolist()):
        assert (g[b, ~masks[d]] == 0).all()
        assert (g[b, masks[d]] != 0).any()
    assert (g[0, :, 0, :3] == 0).all(), "ignore pixels give no gradient"


def _reference(name, logits, labels, ids, masks, targets=None):
    """Pixel by pixel, class by class, in float64."""
    total, count = 0.0, 0
    logits = logits.double()
    b_, k_, h_, w_ = logits.shape
    for b in range(b_):
        d = int(ids[b])
        for y in range(h_):
            for x in range(w_):
                c = int(labels[b, y, x])
                if c == IGNORE:
                    continue
                count += 1
                z = logits[b, :, y, x]
                if name == "ce":
                    total += float(-torch.log_softmax(z, 0)[c])
                    continue
                for k in range(k_):
                    if name == "bce":
                        t = 1.0 if k == c else 0.0
                    elif name == "nullbce":
                        if not masks[d, k]:
                            continue
                        t = 1.0 if k == c else 0.0
                    else:  # crbce
                        entry = int(targets[d, c, k])
                        if entry == NULL:
                            continue
                        t = float(entry)
                    p = torch.sigmoid(z[k])
                    total += float(-(t * torch.log(p) + (1 - t) * torch.log(1 - p)))
    return total, count


@pytest.mark.parametrize("name", list(LOSSES))
def test_losses_match_a_slow_reference(name):
    torch.manual_seed(1)
    union = ["a", "b", "c", "d", "e", "f"]
    spaces = {"X": ["a", "b", "c"], "Y": ["c", "d", "e"], "Z": ["a", "e", "f"]}
    masks = dataset_masks(union, list(spaces.values()))
    targets = relation_targets(
        union, spaces, [("X", "b", "d"), ("X", "b", "e"), ("Y", "d", "f"), ("Z", "a", "c")]
    )
    ids = torch.tensor([0, 1, 2, 1, 0])
    labels = torch.empty(5, 3, 4, dtype=torch.long)
    for b, d in enumerate(ids.tolist()):
        own = masks[d].nonzero().flatten()
        labels[b] = own[torch.randint(len(own), (3, 4))]
    labels[1, 1, 1:3] = IGNORE
    labels[3] = IGNORE  # a fully ignored image
    logits = torch.randn(5, len(union), 3, 4) * 3
    total, count = build_loss(name, masks, targets if name == "crbce" else None)(logits, labels, ids)
    ref_total, ref_count = _reference(name, logits, labels, ids, masks, targets)
    assert int(count) == ref_count
    assert float(total) == pytest.approx(ref_total, rel=1e-5)


def test_crbce_secondary_inside_the_own_space_matches_the_reference():
    union = ["a", "b", "c"]
    spaces = {"X": ["a", "b"], "Y": ["b", "c"]}
    masks = dataset_masks(union, list(spaces.values()))
    targets = relation_targets(union, spaces, [])
    targets[0, 0, 1] = POS  # a within-space secondary (not produced by eq. 6, but allowed by the table)
    logits = torch.randn(2, 3, 2, 2)
    labels = torch.tensor([[[0, 1], [0, 0]], [[2, 1], [1, 2]]])
    ids = torch.tensor([0, 1])
    total, _ = build_loss("crbce", masks, targets)(logits, labels, ids)
    assert float(total) == pytest.approx(
        _reference("crbce", logits, labels, ids, masks, targets)[0], rel=1e-5
    )


def test_crbce_without_relations_equals_nullbce_exactly():
    torch.manual_seed(2)
    masks = _masks()
    logits = torch.randn(2, len(UNION), 4, 4)
    labels = torch.tensor([RIDER, BICYCLIST])[:, None, None].expand(2, 4, 4).clone()
    ids = torch.tensor([0, 1])
    targets = relation_targets(UNION, SPACES, [])
    a = build_loss("crbce", masks, targets)(logits, labels, ids)
    b = build_loss("nullbce", masks)(logits, labels, ids)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_crbce_relation_gives_the_related_class_a_positive_target():
    logits = torch.zeros(1, len(UNION), 1, 1)
    labels = torch.full((1, 1, 1), RIDER)
    ids = torch.tensor([0])
    targets = relation_targets(UNION, SPACES, [("A", "rider", "bicyclist")])
    g = _grad("crbce", logits, labels, ids, targets)
    assert g[0, BICYCLIST, 0, 0] < 0, "the secondary label pulls bicyclist up on A's riders"
    assert g[0, RIDER, 0, 0] < 0


def test_bad_labels_tables_and_names_are_clear_errors():
    with pytest.raises(UserError, match="valid: ce, bce, nullbce, crbce"):
        build_loss("focal", _masks())
    with pytest.raises(UserError, match="expected"):
        build_loss("crbce", _masks(), torch.zeros(2, 3, 3, dtype=torch.int8))
    with pytest.raises(UserError, match="relabel"):
        build_loss("crbce", _masks(), None)
    with pytest.raises(DataError, match="not in the model's union"):
        relation_targets(UNION, SPACES, [("A", "rider", "motorcyclist")])


def test_normalise_loss_is_the_mean_over_valid_pixels():
    assert float(normalise_loss(torch.tensor(6.0), torch.tensor(3))) == 2.0
    assert float(normalise_loss(torch.tensor(0.0), torch.tensor(0))) == 0.0


def test_ce_agrees_with_torch_on_a_mixed_batch():
    torch.manual_seed(3)
    logits = torch.randn(2, 4, 3, 3)
    labels = torch.randint(0, 4, (2, 3, 3))
    labels[0, 0, 0] = IGNORE
    total, count = build_loss("ce", _masks())(logits, labels, torch.tensor([0, 1]))
    expected = F.cross_entropy(logits, labels, ignore_index=IGNORE)
    assert float(total / count) == pytest.approx(float(expected), rel=1e-6)


def _dense_reference(name, logits, labels, ids, masks, targets, offset):
    """The sigmoid losses as autograd sees them: a full target tensor and a keep mask, no shortcuts."""
    valid = labels != IGNORE
    safe = torch.where(valid, labels, torch.zeros_like(labels))
    target = F.one_hot(safe, logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)
    keep = torch.ones_like(logits)
    if name == "nullbce":
        keep = masks[ids][:, :, None, None].expand_as(logits).to(logits.dtype)
    elif name == "crbce":
        row = targets[ids[:, None, None], safe].permute(0, 3, 1, 2)  # [B, K, H, W]
        target, keep = (row == POS).to(logits.dtype), (row != NULL).to(logits.dtype)
    terms = F.binary_cross_entropy_with_logits(logits + offset, target, reduction="none")
    return (terms * keep * valid[:, None]).sum()


@pytest.mark.parametrize("name", [n for n, spec in LOSSES.items() if spec.sigmoid])
def test_hand_written_backward_matches_autograd_on_the_dense_loss(name):
    torch.manual_seed(4)
    union = ["a", "b", "c", "d", "e", "f"]
    spaces = {"X": ["a", "b", "c"], "Y": ["c", "d", "e"], "Z": ["a", "e", "f"]}
    masks = dataset_masks(union, list(spaces.values()))
    relations = [("X", "b", "d"), ("X", "b", "e"), ("X", "a", "c"), ("Y", "d", "f"), ("Z", "a", "c")]
    targets = relation_targets(union, spaces, relations)
    ids = torch.tensor([0, 1, 2, 0])
    labels = torch.empty(4, 5, 3, dtype=torch.long)
    for b, d in enumerate(ids.tolist()):
        own = masks[d].nonzero().flatten()
        labels[b] = own[torch.randint(len(own), (5, 3))]
    labels[2, 0] = IGNORE
    offset = -1.6
    logits = (torch.randn(4, len(union), 5, 3, dtype=torch.float64) * 4).requires_grad_(True)
    total, _ = build_loss(name, masks, targets if name == "crbce" else None, offset)(logits, labels, ids)
    total.backward()
    ours, logits.grad = logits.grad.clone(), None
    reference = _dense_reference(name, logits, labels, ids, masks, targets, offset)
    reference.backward()
    assert float(total.detach()) == pytest.approx(float(reference.detach()), rel=1e-12)
    torch.testing.assert_close(ours, logits.grad, rtol=1e-10, atol=1e-12)
    assert (ours[:, :, 0][2] == 0).all(), "ignore pixels give no gradient"


def test_sigmoid_losses_take_bf16_logits_and_return_a_bf16_gradient():
    logits = torch.randn(2, len(UNION), 3, 3).bfloat16().requires_grad_(True)
    labels = torch.randint(0, len(UNION), (2, 3, 3))
    total, count = build_loss("nullbce", _masks(), None, -1.1)(logits, labels, torch.tensor([0, 1]))
    assert total.dtype == torch.float32
    (total / count).backward()
    assert logits.grad.dtype == torch.bfloat16 and torch.isfinite(logits.grad).all()
