"""Task losses and adversarial divergences, registered by name.

Shapes: classification logits are (B, C) (or (N, C) for token-level tasks); regression
scores are (B,). Every function returns a scalar mean over examples, computed in at least fp32
(half-precision inputs are upcast; float64 stays float64). Divergences take the student's output
first and the (usually detached) target second.

Symmetric KL (`sym_kl`, SMART's and ALUM's ℓ_s) follows the reference implementations' gradient
convention: each KL term's target distribution is detached,

    ℓ_s(p, q) = KL(sg(q) ‖ p) + KL(sg(p) ‖ q)        (sg: stop-gradient)

as MT-DNN's `SymKlCriterion` (mt_dnn/loss.py, the criterion its SMART perturbation applies to the
clean and adversarial logits) and ALUM's criterion (`KL(adv_logits, logits.detach()) +
KL(logits, adv_logits.detach())`) compute it. The value is the symmetric KL; its gradient w.r.t.
each argument is that of one KL term, half that of differentiating both terms through both
arguments near p = q. So λ_s (SMART) and α (ALUM) weigh the term as in the papers' code.
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


def _f32(x: Tensor) -> Tensor:
    """x in fp32, or float64 if it already is: losses are never computed in half precision."""
    return x if x.dtype == torch.float64 else x.float()


def _same_shape(a: Tensor, b: Tensor, what: str) -> None:
    # The reference implementation broadcast (B,) against (B, 1) into a (B, B) loss.
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes {tuple(a.shape)} and {tuple(b.shape)} differ")


@TASK_LOSSES.register("ce")
def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    # Labels of -100 are ignored (MLM positions that are not masked).
    return F.cross_entropy(_f32(logits), labels, ignore_index=-100)


@TASK_LOSSES.register("mse")
@DIVERGENCES.register("mse")
def mse(scores: Tensor, target: Tensor) -> Tensor:
    _same_shape(scores, target, "mse")
    scores = _f32(scores)
    return F.mse_loss(scores, target.to(scores.dtype))


@DIVERGENCES.register("kl")
def kl(logits: Tensor, target_logits: Tensor) -> Tensor:
    """KL(target || model), batch mean: the VAT/ALUM direction."""
    _same_shape(logits, target_logits, "kl")
    logp, logq = F.log_softmax(_f32(logits), -1), F.log_softmax(_f32(target_logits), -1)
    return F.kl_div(logp, logq, log_target=True, reduction="batchmean")


@DIVERGENCES.register("sym_kl")
def symmetric_kl(logits: Tensor, target_logits: Tensor) -> Tensor:
    """KL(q‖p) + KL(p‖q), SMART's ℓ_s for classification; each term's target detached (module docstring)."""
    return kl(logits, target_logits.detach()) + kl(target_logits, logits.detach())


@DIVERGENCES.register("js")
def jensen_shannon(logits: Tensor, target_logits: Tensor) -> Tensor:
    _same_shape(logits, target_logits, "js")
    p, q = F.softmax(_f32(logits), -1), F.softmax(_f32(target_logits), -1)
    logm = (0.5 * (p + q)).clamp_min(1e-12).log()
    kl_pm = F.kl_div(logm, p, reduction="batchmean")
    kl_qm = F.kl_div(logm, q, reduction="batchmean")
    return 0.5 * (kl_pm + kl_qm)


@DIVERGENCES.register("hellinger")
def hellinger(logits: Tensor, target_logits: Tensor) -> Tensor:
    _same_shape(logits, target_logits, "hellinger")
    sp, sq = F.softmax(_f32(logits), -1).sqrt(), F.softmax(_f32(target_logits), -1).sqrt()
    return ((sp - sq) ** 2).sum(-1).mul(0.5).mean()


def zero_like_loss(ref: Tensor) -> Tensor:
    """A differentiable-graph-free zero on ref's device."""
    return torch.zeros((), device=ref.device)
