"""VAT: virtual adversarial training; a label-free smoothness term found by power iteration.

Miyato, Maeda, Koyama & Ishii, 2018, "Virtual Adversarial Training: A Regularization Method for
Supervised and Semi-Supervised Learning" (TPAMI), Eq. (5)-(13); applied to text embeddings in
Miyato, Dai & Goodfellow, 2017:

    d ~ N(0, I);  repeat K times:  d ← ∇_d D(p(·|x), p(·|x + ξ·d/‖d‖)) ;  r_vadv = ε · d/‖d‖
    R_vadv = D(p(·|x) (detached), p(·|x + r_vadv))

No labels are used: the target is the model's own clean output, detached. D is the task's
adversarial divergence (task definition `adv_loss`: sym_kl / mse by default; the paper's KL is
`adv_loss: kl`). x are each example's word embeddings (B, T, H), masked to real tokens; the
power-iteration gradients are taken w.r.t. d only.
Paper defaults: K = 1, ξ = 1e-6, ε = 2.0 (images) / 5.0 (text, normalized embeddings), λ = 1,
ℓ2 per example (flags: --adv_steps, --vat_xi, --adv_eps, --adv_weight, --adv_norm l2
--adv_norm_level example).
"""

from __future__ import annotations

from torch import Tensor

from mtadv.adversarial.base import ADV_METHODS, Regularizer, StepContext
from mtadv.adversarial.embedding_attack import input_grad
from mtadv.adversarial.perturb import gaussian_noise, norm_of, normalize, project


@ADV_METHODS.register("vat")
class VAT(Regularizer):
    """λ · D(f(x), f(x + r_vadv)); needs no labels."""

    name = "vat"
    # The paper's K = 1, ξ = 1e-6, ℓ2 per example; ε = 1.0 (its 5.0 is on unit-normalized embeddings).
    defaults = {"adv_eps": 1.0, "adv_steps": 1, "vat_xi": 1e-6, "adv_norm": "l2", "adv_norm_level": "example"}

    def loss(self, ctx: StepContext) -> tuple[Tensor, dict[str, float]]:
        c, mask = self.cfg, ctx.mask
        clean = ctx.logits.detach()  # (B, C) or (B,): the virtual label
        x = ctx.embeds.detach()
        d = normalize(gaussian_noise(x, 1.0, mask), c.adv_norm, c.adv_norm_level)  # random unit direction
        for _ in range(c.adv_steps):  # power iteration towards the dominant eigenvector of the Hessian of D
            d = (c.vat_xi * d).requires_grad_(True)
            div = ctx.divergence(ctx.forward(x + d, replay_dropout=c.adv_replay_dropout), clean)
            d = normalize(input_grad(div, d), c.adv_norm, c.adv_norm_level) * mask
        r_vadv = project(c.adv_eps * d, c.adv_eps, c.adv_norm, c.adv_norm_level)
        self.last_delta = r_vadv.detach()  # (B, T, H), for inspection
        adv_out = ctx.forward(ctx.embeds + r_vadv, replay_dropout=c.adv_replay_dropout)
        vadv = ctx.divergence(adv_out, clean)
        delta_norm = norm_of(r_vadv, c.adv_norm, c.adv_norm_level).max().item()
        return c.adv_weight * vadv, {"adv_loss": vadv.item(), "adv_delta_norm": delta_norm}
