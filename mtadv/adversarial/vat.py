"""VAT: virtual adversarial training; a label-free smoothness term found by power iteration.

Miyato, Maeda, Koyama & Ishii, 2018, "Virtual Adversarial Training: A Regularization Method for
Supervised and Semi-Supervised Learning" (TPAMI), Eq. (5)-(13); applied to text embeddings in
Miyato, Dai & Goodfellow, 2017:

    d ~ N(0, I);  repeat K times:  d ← ∇_d D(p(·|x), p(·|x + ξ·‖x‖·d/‖d‖)) ;  r_vadv = ε · d/‖d‖
    R_vadv = D(p(·|x) (detached), p(·|x + r_vadv))

No labels are used: the target is the model's own clean output, detached. D is the task's
adversarial divergence (task definition `adv_loss`: sym_kl / mse by default; the paper's KL is
`adv_loss: kl`). x are each example's embeddings (B, T, H), masked to real tokens; the
power-iteration gradients are taken w.r.t. d only (a non-finite one skips the term, logged as
adv_nonfinite_grads).

The power iteration is a finite difference: ∇_d D at x + ξ·d is H·ξd up to O(ξ²), so the forward
must resolve a change of relative size ξ in its input. Two choices make it do so:
- ξ is relative: the step is ξ times the norm of x itself (per example or per token, in the norm
  of --adv_norm), so it has the same meaning on every encoder and in every perturbation space.
  The image papers' absolute ξ = 1e-6 is, on word embeddings whose example norms are of order
  1-10, a relative step near fp32's resolution (2^-24 ≈ 6e-8); ξ = 1e-2 is far above it and
  far below ε.
- the power iteration runs in fp32, with autocast off, and under autocast its target is the
  clean output recomputed in fp32 (one extra forward without a graph, the same dropout masks): a
  bf16 (fp16) forward keeps 8 (11) significant bits, so the logits' change at any ξ small enough
  for the quadratic approximation is partly or wholly rounded away, and a half-precision target
  adds its rounding error as a first-order term to the gradient. The final forward at x + r_vadv,
  which trains the weights, runs under the step's autocast as usual.
The eigenvector's sign is arbitrary, and so is r_vadv's: D(x + r) and D(x − r) agree to second order.

Paper defaults: K = 1, ξ = 1e-6 (absolute), ε = 2.0 (images) / 5.0 (text, normalized embeddings),
λ = 1, ℓ2 per example (flags: --adv_steps, --vat_xi, --adv_eps, --adv_weight, --adv_norm l2
--adv_norm_level example). Miyato et al.'s text code takes its finite difference with a constant
0.1 on embeddings normalized to unit variance per dimension.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from mtadv.adversarial.base import ADV_METHODS, Regularizer, StepContext, zero_loss
from mtadv.adversarial.embedding_attack import input_grad
from mtadv.adversarial.perturb import full_precision_target, gaussian_noise, norm_of, normalize, project
from mtadv.config import setting
from mtadv.losses import LossFn


def power_iteration(
    forward: Callable[[Tensor], Tensor],
    x: Tensor,
    clean: Tensor,
    mask: Tensor,
    divergence: LossFn,
    d: Tensor,
    *,
    xi: float,
    steps: int,
    norm: str,
    level: str,
    grad_scale: float = 1.0,
) -> Tensor | None:
    """The unit direction after `steps` power iterations from d (B, T, H); None if a gradient was not finite.

    x: (B, T, H) clean embeddings (detached here); clean: the clean output, detached. Each step takes
    ∇_d D(f(x + ξ·‖x‖·d), clean) with ‖x‖ per example (B, 1, 1) or per token (B, T, 1), in fp32
    whatever the caller's autocast (module docstring).
    """
    x = x.detach().float()
    step = xi * norm_of(x * mask, norm, level)  # (B, 1, 1) or (B, T, 1): the finite-difference size
    d = normalize(d.float() * mask, norm, level)
    with torch.autocast(x.device.type, enabled=False):
        clean = full_precision_target(forward, x, clean)  # an autocast clean output is recomputed in fp32
        for _ in range(steps):  # towards the dominant eigenvector of the Hessian of D at x
            d = (step * d).requires_grad_(True)
            grad = input_grad(divergence(forward(x + d), clean), d, grad_scale)
            if grad is None:
                return None
            d = normalize(grad, norm, level) * mask
    return d


@ADV_METHODS.register("vat")
class VAT(Regularizer):
    """λ · D(f(x), f(x + r_vadv)); needs no labels."""

    name = "vat"
    at_zero_perturbation = "zero"
    # The paper's K = 1, ℓ2 per example; ε = 1.0 (its 5.0 is on unit-normalized embeddings).
    defaults = {"adv_eps": 1.0, "adv_steps": 1, "adv_norm": "l2", "adv_norm_level": "example"}
    # ξ = 1e-2 of ‖x‖, resolved by the fp32 power iteration (the module docstring says why not the paper's
    # absolute 1e-6).
    settings = {
        "vat_xi": setting(
            1e-2,
            "VAT: finite-difference step ξ of the power iteration, relative to the norm of the perturbed tensor "
            "(per example or per token, as --adv_norm_level)",
            gt=0,
        )
    }

    def loss(self, ctx: StepContext) -> tuple[Tensor, dict[str, float]]:
        c, mask = self.cfg, ctx.mask
        clean = ctx.logits.detach()  # (B, C) or (B,): the virtual label

        def forward(inputs: Tensor) -> Tensor:
            return ctx.forward(inputs, replay_dropout=c.adv_replay_dropout)

        d0 = gaussian_noise(ctx.embeds.detach(), 1.0, mask)  # a random direction
        d = power_iteration(
            forward, ctx.embeds, clean, mask, ctx.divergence, d0,
            xi=c.vat_xi, steps=c.adv_steps, norm=c.adv_norm, level=c.adv_norm_level, grad_scale=ctx.grad_scale,
        )  # fmt: skip
        if d is None:
            return zero_loss(ctx), {"adv_nonfinite_grads": 1.0}
        r_vadv = project(c.adv_eps * d, c.adv_eps, c.adv_norm, c.adv_norm_level).to(ctx.embeds.dtype)
        self.last_delta = r_vadv.detach()  # (B, T, H), for inspection
        vadv = ctx.divergence(forward(ctx.embeds + r_vadv), clean)
        delta_norm = norm_of(r_vadv, c.adv_norm, c.adv_norm_level).max().item()
        return c.adv_weight * vadv, {"adv_loss": vadv.item(), "adv_delta_norm": delta_norm}
