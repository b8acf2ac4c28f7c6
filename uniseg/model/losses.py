"""Multi-dataset segmentation losses: CE, BCE, Null BCE (eq. 4) and class-relational BCE (eq. 8).

Every loss takes logits [B, K, H, W] over the union, labels [B, H, W] (union indices, 255 = ignore) and
dataset ids [B], and returns (sum, count): the sum of its per-pixel terms and the number of valid pixels.
`normalise_loss` divides by the count summed over all DDP processes, so the gradient does not depend on
how a batch is split across GPUs.

The sigmoid losses never build a one-hot target: BCE(x, y) = softplus(x) - x*y, so the positive part is
a gather of the logit at the label and only the softplus term runs over all (pixel, class) pairs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F

from uniseg import IGNORE
from uniseg.errors import DataError, UserError, choices

NULL, NEG, POS = -1, 0, 1  # entries of a relational target table


@dataclass(frozen=True)
class LossSpec:
    """A registered loss and the traits the rest of the pipeline reads instead of its name."""

    factory: Callable
    sigmoid: bool  # per-class sigmoid scores (probabilities, prior offset); else softmax over the union
    needs_relations: bool  # trained with the mined relations' target table (the retrain stage)


LOSSES: dict[str, LossSpec] = {}  # names: uniseg.names.LOSSES (tests/test_names.py ties the two)


def register_loss(name: str, *, sigmoid: bool, needs_relations: bool = False):
    def wrap(factory):
        LOSSES[name] = LossSpec(factory, sigmoid, needs_relations)
        return factory

    return wrap


def loss_spec(name: str) -> LossSpec:
    if name not in LOSSES:
        raise UserError(f"loss: unknown loss {name!r}; valid: {choices(LOSSES)}")
    return LOSSES[name]


def _valid_and_safe(labels: torch.Tensor):
    valid = labels != IGNORE
    return valid, torch.where(valid, labels, torch.zeros_like(labels))


@register_loss("ce", sigmoid=False)
def _ce(dataset_masks: torch.Tensor, targets: torch.Tensor | None = None, offset: float = 0.0):
    """Softmax cross-entropy over the whole union (the paper's multi-dataset baseline, eq. 1)."""

    def loss(logits, labels, dataset_ids):
        total = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE, reduction="sum")
        return total, (labels != IGNORE).sum()

    return loss


class _SigmoidLoss(torch.autograd.Function):
    """The sigmoid losses in one pass each way, with a hand-written backward.

    loss = sum over valid pixels of
           sum_k softplus(x_k + bias_k)                    the negatives (bias -inf: null, no term)
         + sum_s [lin_s * -(x_i_s + offset) + sp_s * softplus(-(x_i_s + offset))]   gathered terms

    where i_s = index[:, s] are a few gathered classes per pixel (the label; crbce adds its secondary
    labels). As BCE(x, 1) = BCE(x, 0) - x, a positive class is its negative term plus a `lin` term; a
    secondary outside the pixel's own space (no negative term) is an `sp` term.

    Forward: one add (the bias, [B, K] broadcast), one softplus, one reduction. Backward: an in-place
    sigmoid, one multiply, and a scatter of the few gathered terms. A class with bias -inf gets
    sigmoid(-inf) = 0: exactly zero gradient. Autograd's generic graph for the same loss materialises
    a one-hot or a scatter and sums two full-size gradients; this costs about the same as softmax CE
    (see `make bench`)."""

    @staticmethod
    def forward(ctx, x, bias, valid, index, lin, sp, offset):
        dtype = torch.promote_types(x.dtype, torch.float32)  # bf16 logits (AMP) are computed in fp32
        z = x.to(dtype) + bias.to(dtype)[:, :, None, None]
        valid, lin = valid.to(dtype), lin.to(dtype)
        sp = sp.to(dtype) if sp is not None else None
        negatives = (F.softplus(z).sum(1) * valid).sum()
        xi = x.gather(1, index).to(dtype) + torch.tensor(offset, dtype=dtype)  # rounded as bias is
        gathered = -(xi * lin).sum()
        if sp is not None:
            gathered = gathered + (F.softplus(-xi) * sp).sum()
        ctx.save_for_backward(z, valid, index, lin, sp, xi if sp is not None else None)
        ctx.input_dtype = x.dtype
        return negatives + gathered

    @staticmethod
    def backward(ctx, grad):
        z, valid, index, lin, sp, xi = ctx.saved_tensors
        g = torch.sigmoid_(z)  # z is this function's own buffer, not needed any more
        g.mul_((valid * grad).unsqueeze(1))
        dxi = lin.neg()
        if sp is not None:
            dxi = dxi - sp * torch.sigmoid(-xi)
        g.scatter_add_(1, index, dxi * grad)
        return g.to(ctx.input_dtype), None, None, None, None, None, None


def _label_terms(labels):
    """(valid as float, index [B, 1, H, W] of the label, lin = valid): the positive term of each pixel."""
    valid, safe = _valid_and_safe(labels)
    valid = valid.float()
    return valid, safe.unsqueeze(1), valid.unsqueeze(1)


@register_loss("bce", sigmoid=True)
def _bce(dataset_masks: torch.Tensor, targets: torch.Tensor | None = None, offset: float = 0.0):
    """Sigmoid BCE over the whole union: every class outside the pixel's label is a negative."""
    k = dataset_masks.shape[1]

    def loss(logits, labels, dataset_ids):
        valid, index, lin = _label_terms(labels)
        bias = torch.full((logits.shape[0], k), offset, dtype=torch.float64, device=logits.device)
        return _SigmoidLoss.apply(logits, bias, valid, index, lin, None, offset), (labels != IGNORE).sum()

    return loss


def _null_bias(dataset_masks: torch.Tensor, offset: float) -> torch.Tensor:
    """[D, K]: `offset` on each dataset's own classes, -inf (null: no term, zero gradient) elsewhere."""
    return torch.where(
        dataset_masks, torch.tensor(offset, dtype=torch.float64), torch.tensor(-math.inf, dtype=torch.float64)
    )


@register_loss("nullbce", sigmoid=True)
def _nullbce(dataset_masks: torch.Tensor, targets: torch.Tensor | None = None, offset: float = 0.0):
    """Null BCE (eq. 4): sigmoid BCE only over the classes of the sample's own dataset; classes outside
    its label space get exactly zero gradient."""
    bias = _null_bias(dataset_masks, offset)

    def loss(logits, labels, dataset_ids):
        valid, index, lin = _label_terms(labels)
        per_sample = bias.to(logits.device)[dataset_ids]
        return _SigmoidLoss.apply(logits, per_sample, valid, index, lin, None, offset), (
            labels != IGNORE
        ).sum()

    return loss


@register_loss("crbce", sigmoid=True, needs_relations=True)
def _crbce(dataset_masks: torch.Tensor, targets: torch.Tensor | None = None, offset: float = 0.0):
    """Class-relational BCE (eq. 8): the target row of a pixel of class c from dataset d is targets[d, c]:
    1 for c and its mined related classes, 0 for the other classes of d, null (no gradient) elsewhere.

    Computed as Null BCE plus a term for the few secondary labels of each row, gathered by index:
    a secondary s outside D_d adds BCE(x_s, 1) = softplus(-x_s); one inside D_d (already counted as a
    negative by Null BCE) adds -x_s. No per-pixel target rows of size K are ever built."""
    if targets is None:
        raise UserError("loss crbce needs a relational target table (run the relabel stage)")
    # The gather tables are built once on the CPU (the tables may come on the training device) and are
    # moved to the logits' device per call.
    dataset_masks, targets = dataset_masks.cpu(), targets.cpu()
    num_datasets, k = dataset_masks.shape
    if tuple(targets.shape) != (num_datasets, k, k):
        raise UserError(
            f"relational target table has shape {tuple(targets.shape)}, expected {(num_datasets, k, k)}"
        )
    nullbce = _nullbce(dataset_masks, offset=offset)
    secondary = (targets == POS) & ~torch.eye(k, dtype=torch.bool)  # [D, K, K]
    inside = secondary & dataset_masks[:, None, :]
    width = max(int(secondary.sum(-1).max()), 1)
    # Per (dataset, class) row: up to `width` secondary class indices, their kind and a validity weight.
    index = torch.zeros(num_datasets * k, width, dtype=torch.long)
    kind_out = torch.zeros(num_datasets * k, width)
    kind_in = torch.zeros(num_datasets * k, width)
    for row, (d, c) in enumerate((d, c) for d in range(num_datasets) for c in range(k)):
        cols = secondary[d, c].nonzero().flatten()
        index[row, : len(cols)] = cols
        kind_in[row, : len(cols)] = inside[d, c, cols].float()
        kind_out[row, : len(cols)] = 1.0 - kind_in[row, : len(cols)]
    # The label itself is gathered column 0: a `lin` term, no `sp` term.
    index = torch.cat([torch.zeros(num_datasets * k, 1, dtype=torch.long), index], 1)
    lin_table = torch.cat([torch.ones(num_datasets * k, 1), kind_in], 1)
    sp_table = torch.cat([torch.zeros(num_datasets * k, 1), kind_out], 1)
    has_relations = bool(secondary.any())
    bias = _null_bias(dataset_masks, offset)

    def loss(logits, labels, dataset_ids):
        if not has_relations:
            return nullbce(logits, labels, dataset_ids)
        valid, safe = _valid_and_safe(labels)
        valid = valid.float()
        row = dataset_ids[:, None, None] * k + safe  # [B, H, W]
        cols = index.to(logits.device)[row]  # [B, H, W, 1 + S]
        cols[..., 0] = safe
        per_pixel = valid.unsqueeze(-1)
        lin = (lin_table.to(logits.device)[row] * per_pixel).permute(0, 3, 1, 2).contiguous()
        sp = (sp_table.to(logits.device)[row] * per_pixel).permute(0, 3, 1, 2).contiguous()
        per_sample = bias.to(logits.device)[dataset_ids]
        cols = cols.permute(0, 3, 1, 2).contiguous()
        total = _SigmoidLoss.apply(logits, per_sample, valid, cols, lin, sp, offset)
        return total, (labels != IGNORE).sum()

    return loss


def build_loss(
    name: str, dataset_masks: torch.Tensor, targets: torch.Tensor | None = None, offset: float = 0.0
):
    """The loss function `name`. dataset_masks: bool [D, K], True where union class k belongs to dataset
    d's label space; targets: int8 [D, K, K] (crbce only); offset: a constant added to the logits of the
    sigmoid losses (`sigmoid_prior`), ignored by CE (softmax is shift-invariant)."""
    return loss_spec(name).factory(dataset_masks, targets, offset)


def sigmoid_prior(num_classes: int) -> float:
    """-log(K-1): the logit at which a sigmoid gives p = 1/K, the prior of one class among K.

    A cosine classifier has no bias (logits t·cos in [-t, t]), so at initialisation every class has
    p = 0.5 and a sigmoid loss first spends its iterations pushing all K classes down. Adding this
    constant to its logits (in the loss and at inference, stored in the model file) starts it at the
    prior instead, as the linear classifier's bias initialisation does."""
    return -math.log(max(num_classes - 1, 1))


def prior_offset(classifier: str, loss: str, num_classes: int) -> float:
    """The offset a model's sigmoid scores use: the prior for a cosine head trained with a sigmoid loss,
    else 0 (a linear head starts with the prior as its bias; softmax is shift-invariant)."""
    return sigmoid_prior(num_classes) if classifier == "cosine" and loss_spec(loss).sigmoid else 0.0


def normalise_loss(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """total / (valid pixels over all processes). DDP averages gradients over processes, so the local
    sum is scaled by the world size: the result is the global per-pixel mean."""
    count = count.detach().to(torch.float64)
    world = 1
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(count)
        world = dist.get_world_size()
    return total * world / count.clamp(min=1).to(total.dtype)


def dataset_masks(union: Sequence[str], spaces: Sequence[Sequence[str]]) -> torch.Tensor:
    """bool [D, K]: which union classes each dataset's label space holds."""
    index = {c: k for k, c in enumerate(union)}
    masks = torch.zeros(len(spaces), len(union), dtype=torch.bool)
    for d, space in enumerate(spaces):
        for c in space:
            masks[d, index[c]] = True
    return masks


def relation_targets(
    union: Sequence[str], spaces: Mapping[str, Sequence[str]], relations: Sequence[tuple[str, str, str]]
) -> torch.Tensor:
    """int8 [D, K, K] target table of eq. 8, datasets in the order of `spaces`.

    relations: (dataset, primary, secondary) triples (the multi-label table). Row (d, c): 1 at c and at
    every secondary of (d, c); 0 at the other classes of d; -1 (null) elsewhere."""
    index = {c: k for k, c in enumerate(union)}
    names = list(spaces)
    masks = dataset_masks(union, [spaces[n] for n in names])
    k = len(union)
    table = torch.full((len(names), k, k), NULL, dtype=torch.int8)
    table[masks[:, None, :].expand(-1, k, -1)] = NEG
    eye = torch.eye(k, dtype=torch.bool)
    table[:, eye] = POS
    for dataset, primary, secondary in relations:
        for name in (primary, secondary):
            if name not in index:
                raise DataError(
                    f"relation {dataset}: {primary} -> {secondary}: class {name!r} is not in the model's union"
                )
        if dataset not in spaces:
            raise DataError(
                f"relation for dataset {dataset!r}, which is not a training dataset ({choices(names)})"
            )
        table[names.index(dataset), index[primary], index[secondary]] = POS
    return table
