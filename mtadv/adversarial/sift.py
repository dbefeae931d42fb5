"""SiFT: scale-invariant fine-tuning, virtual adversarial training on normalized embeddings.

He, Liu, Gao & Chen, 2021, "DeBERTa: Decoding-enhanced BERT with Disentangled Attention" (ICLR),
Sec. 3.3 "Scale Invariant Fine-Tuning": the virtual-adversarial objective of SMART and ALUM
(Jiang et al., 2020, Eq. (2); Miyato et al., 2018), with the perturbation added to the *normalized*
embeddings, so that its size means the same whatever the scale of the embeddings:

    loss = L(x) + λ · D(f(x̄ + δ), f(x̄)),   x̄: the embeddings, normalized per token
    δ_0 = clamp(v, −2σ, 2σ),  v ~ N(0, σ²I)
    K times:  g = ∇_δ Σ_i D(f(x̄ + δ)_i, f(x̄)_i (detached));   δ ← δ + η · g / (1e-6 + ‖g‖∞)  per token

D is the task's adversarial divergence (`adv_loss`: sym_kl for classification, mse for regression);
the final term has gradients through both branches. There is no radius: the code never projects,
so ‖δ‖∞ ≤ 2σ + K·η per token (a finite --adv_eps adds a projection onto its ball).
Defaults of the official code (DeBERTa/sift/sift.py; DeBERTa/apps/run.py --vat_*;
experiments/glue/mnli.sh): σ = 1e-2 (--adv_init_mag), η = 1e-4 (--adv_lr), K = 1 (--adv_steps),
λ = 5 (--adv_weight; 3 for DeBERTa-v3-xsmall), ℓ∞ per token (--adv_norm, --adv_norm_level).
The code draws fresh dropout masks in every forward, so its term also holds the dropout noise that
R-Drop regularizes; here the perturbed forwards replay the clean masks (mtadv's convention: the term
is δ's effect alone, and exactly zero at δ = 0); --adv_replay_dropout false is the code's behaviour.
x̄ is the `embedding` space (--adv_space, default here): the embedding layer's output divided by
each token's RMS. The code normalizes the *input* of the embedding LayerNorm instead (zero mean,
unit variance, no affine) and runs the model's LayerNorm after the perturbation; the differences,
and the regression case (identically zero in the code), are in docs/methods/sift.md.
"""

from __future__ import annotations

import math

from torch import Tensor

from mtadv.adversarial.base import ADV_METHODS, Regularizer, StepContext
from mtadv.adversarial.embedding_attack import input_grad
from mtadv.adversarial.perturb import gaussian_noise, norm_of, project
from mtadv.config import AdvConfig

# sift.py's `grad / (1e-6 + grad.abs().max(-1, keepdim=True)[0])`. Not only a division guard (that is
# perturb.TINY = 1e-12): tokens whose gradient is ≲ 1e-6 move less than η.
SIFT_GUARD = 1e-6


def clamped_noise(like: Tensor, sigma: float, mask: Tensor) -> Tensor:
    """δ_0 = clamp(N(0, σ²), −2σ, 2σ) on real tokens, zero on padding (PerturbationLayer.update_delta)."""
    return gaussian_noise(like, sigma, mask).clamp(-2 * sigma, 2 * sigma)


def sift_direction(grad: Tensor, norm: str, level: str) -> Tensor:
    """SiFT's step direction g / (1e-6 + ‖g‖), norms per token (B, T, 1) or per example (B, 1, 1).

    Unlike perturb.normalize, every coordinate's step is below 1 in that norm and shrinks with ‖g‖
    once ‖g‖ nears 1e-6. g is the gradient of the divergence summed over examples, as in the code,
    so that the guard means the same at every batch size.
    """
    return grad / (norm_of(grad, norm, level) + SIFT_GUARD)


def sift_perturbation(ctx: StepContext, cfg: AdvConfig) -> tuple[Tensor, bool]:
    """δ after K SiFT steps (B, T, H), detached; and whether a non-finite gradient stopped the ascent.

    Gradients are taken w.r.t. δ only (no weight gradient), on the loss times the fp16 grad scale.
    A non-finite gradient leaves δ where it is, as sift.py does (its update_delta returns early).
    """
    x, target, mask = ctx.embeds.detach(), ctx.logits.detach(), ctx.mask  # (B, T, H), (B, C)|(B,), (B, T, 1)
    norm, level, eps = cfg.adv_norm, cfg.adv_norm_level, cfg.adv_eps
    delta = project(clamped_noise(x, cfg.adv_init_mag, mask), eps, norm, level)
    rows = target.shape[0]  # sift.py sums the per-example loss: ×rows turns our batch mean into that sum
    for _ in range(cfg.adv_steps):
        delta.requires_grad_(True)
        out = ctx.forward(x + delta, replay_dropout=cfg.adv_replay_dropout)
        grad = input_grad(ctx.divergence(out, target) * rows, delta, ctx.grad_scale)  # fp32 or None
        if grad is None:
            return delta.detach(), True
        step = cfg.adv_lr * sift_direction(grad, norm, level) * mask
        delta = project(delta.detach() + step, eps, norm, level)
    return delta.detach(), False


@ADV_METHODS.register("sift")
class SiFT(Regularizer):
    """λ · D(f(x̄ + δ), f(x̄)) with δ from SiFT's clamped-noise start and guarded ℓ∞ steps."""

    name = "sift"
    strength = ("adv_init_mag", "adv_weight")
    at_zero_perturbation = "zero"
    # The official code's values (DeBERTa/apps/run.py and experiments/glue/mnli.sh, *-sift configurations).
    defaults = {
        "adv_space": "embedding",  # the normalized embeddings (ours: per-token RMS units)
        "adv_init_mag": 1e-2,  # σ, --vat_init_perturbation
        "adv_lr": 1e-4,  # η, --vat_learning_rate
        "adv_steps": 1,  # K: one update_delta per step
        "adv_eps": math.inf,  # no projection in the code
        "adv_norm": "linf",  # grad.abs().max(-1): ℓ∞ over each token's hidden vector
        "adv_norm_level": "token",
        "adv_weight": 5.0,  # λ, --vat_lambda (base, v3-small/base, xxlarge-v2; v3-xsmall: 3)
        # adv_replay_dropout stays true (the code's logits_fn draws fresh masks: set it false for that)
    }

    def loss(self, ctx: StepContext) -> tuple[Tensor, dict[str, float]]:
        c = self.cfg
        delta, skipped = sift_perturbation(ctx, c)
        self.last_delta = delta  # (B, T, H), for inspection
        adv_out = ctx.forward(ctx.embeds + delta, replay_dropout=c.adv_replay_dropout)  # attached: x̄ and θ
        term = ctx.divergence(adv_out, ctx.logits)  # gradients through both branches
        return c.adv_weight * term, {
            "adv_loss": term.item(),
            "adv_delta_norm": norm_of(delta, c.adv_norm, c.adv_norm_level).max().item(),
            "adv_ascent_skipped": float(skipped),  # fraction of micro-steps, once averaged by the trainer
        }
