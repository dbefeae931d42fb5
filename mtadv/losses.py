"""Task losses and adversarial divergences, registered by name.

Shapes: classification logits are (B, C) (or (N, C) for token-level tasks); regression
scores are (B,). Every function returns a scalar mean over examples. Divergences take the
student's output first and the (usually detached) target second.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from mtadv.registry import Registry

LossFn = Callable[[Tensor, Tensor], Tensor]
TASK_LOSSES: Registry[LossFn] = Registry("task loss")
DIVERGENCES: Registry[LossFn] = Registry("divergence")


def _same_shape(a: Tensor, b: Tensor, what: str) -> None:
    # The reference implementation broadcast (B,) against (B, 1) into a (B, B) loss.
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes {tuple(a.shape)} and {tuple(b.shape)} differ")


@TASK_LOSSES.register("ce")
def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    # Labels of -100 are ignored (MLM positions that are not masked).
    return F.cross_entropy(logits.float(), labels, ignore_index=-100)


@TASK_LOSSES.register("mse")
@DIVERGENCES.register("mse")
def mse(scores: Tensor, target: Tensor) -> Tensor:
    _same_shape(scores, target, "mse")
    return F.mse_loss(scores.float(), target.float())


@DIVERGENCES.register("kl")
def kl(logits: Tensor, target_logits: Tensor) -> Tensor:
    """KL(target || model), batch mean: the VAT/ALUM direction."""
    _same_shape(logits, target_logits, "kl")
    logp, logq = F.log_softmax(logits.float(), -1), F.log_softmax(target_logits.float(), -1)
    return F.kl_div(logp, logq, log_target=True, reduction="batchmean")


@DIVERGENCES.register("sym_kl")
def symmetric_kl(logits: Tensor, target_logits: Tensor) -> Tensor:
    """KL(p||q) + KL(q||p), SMART's ℓ_s for classification."""
    return kl(logits, target_logits) + kl(target_logits, logits)


@DIVERGENCES.register("js")
def jensen_shannon(logits: Tensor, target_logits: Tensor) -> Tensor:
    _same_shape(logits, target_logits, "js")
    p, q = F.softmax(logits.float(), -1), F.softmax(target_logits.float(), -1)
    logm = (0.5 * (p + q)).clamp_min(1e-12).log()
    kl_pm = F.kl_div(logm, p, reduction="batchmean")
    kl_qm = F.kl_div(logm, q, reduction="batchmean")
    return 0.5 * (kl_pm + kl_qm)


@DIVERGENCES.register("hellinger")
def hellinger(logits: Tensor, target_logits: Tensor) -> Tensor:
    _same_shape(logits, target_logits, "hellinger")
    sp, sq = F.softmax(logits.float(), -1).sqrt(), F.softmax(target_logits.float(), -1).sqrt()
    return ((sp - sq) ** 2).sum(-1).mul(0.5).mean()


def zero_like_loss(ref: Tensor) -> Tensor:
    """A differentiable-graph-free zero on ref's device."""
    return torch.zeros((), device=ref.device)
