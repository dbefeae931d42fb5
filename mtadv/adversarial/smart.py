"""SMART's smoothness-inducing adversarial regularizer R_s.

Jiang et al., 2020, "SMART: Robust and Efficient Fine-Tuning for Pre-trained Natural Language
Models through Principled Regularized Optimization" (ACL), Eq. (2) and Algorithm 1:

    R_s(θ) = 1/n Σ_i  max_{‖x̃_i − x_i‖_p ≤ ε}  ℓ_s(f(x̃_i; θ), f(x_i; θ))

approximated by projected gradient ascent on the word embeddings x:
    x̃ ← x + v,  v ~ N(0, σ²I)                                  (masked to real tokens)
    repeat K times:  g ← ∇_x̃ ℓ_s(f(x̃), f(x).detach());  x̃ ← Π_{‖x̃−x‖≤ε}(x̃ + η·g/‖g‖)
    R_s = ℓ_s(f(x̃), f(x))                                      (gradient through both branches)

ℓ_s is the task's adversarial divergence (symmetric KL for classification, squared error for
regression). Paper defaults (Sec. 5, implementation details): σ = 1e-5, η = 1e-3, ε = 1e-5, K = 1,
ℓ∞ normalization, λ_s = 1 (flags --adv_init_mag, --adv_lr, --adv_eps, --adv_steps, --adv_norm,
--adv_weight; --smart sets them all). ε is a real radius here; the reference code never
projected, so its perturbation was η·g/‖g‖∞ (ℓ∞ = η = 1e-3 per token): `--adv_eps 1e-3`
reproduces that size (README, section SMART, has the measured R_s for both).

`virtual_adversarial_perturbation` is the shared ascent: ALUM (MLM) and VAT-style methods reuse it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from mtadv.adversarial.base import ADV_METHODS, Regularizer, StepContext, zero_loss
from mtadv.adversarial.perturb import gaussian_noise, norm_of, normalize, project
from mtadv.config import AdvConfig
from mtadv.losses import LossFn


@dataclass
class AscentResult:
    delta: Tensor | None  # (B, T, H) detached perturbation inside the ε-ball; None if the ascent failed
    skipped: bool  # a NaN/inf appeared in the ascent gradient


def virtual_adversarial_perturbation(
    forward: Callable[[Tensor], Tensor],
    embeds: Tensor,
    target: Tensor,
    mask: Tensor,
    divergence: LossFn,
    *,
    sigma: float,
    step_size: float,
    eps: float,
    steps: int,
    norm: str = "linf",
    level: str = "token",
) -> AscentResult:
    """Find δ (‖δ‖ ≤ ε) that maximizes divergence(forward(embeds + δ), target).

    embeds: (B, T, H) clean word embeddings (detached here); target: the clean output,
    detached; mask: (B, T, 1). Gradients are taken w.r.t. δ only, so no weight gradients are
    computed and the caller's single backward stays the only one.
    """
    x = embeds.detach()
    target = target.detach()
    delta = project(gaussian_noise(x, sigma, mask), eps, norm, level)  # x̃ = x + v, kept inside the ball
    for _ in range(steps):
        delta.requires_grad_(True)
        div = divergence(forward(x + delta), target)
        (grad,) = torch.autograd.grad(div, [delta])
        if not torch.isfinite(grad).all():
            return AscentResult(None, skipped=True)
        step = step_size * normalize(grad, norm, level) * mask
        delta = project(delta.detach() + step, eps, norm, level)
    return AscentResult(delta.detach(), skipped=False)


@ADV_METHODS.register("smart")
class SmartRegularizer(Regularizer):
    """λ_s · R_s, with ℓ_s the task's adversarial divergence (task definition `adv_loss`)."""

    name = "smart"

    def __init__(self, cfg: AdvConfig) -> None:
        super().__init__(cfg)
        self.skipped = 0  # steps whose ascent gradient or R_s was non-finite; cumulative, saved

    def loss(self, ctx: StepContext) -> tuple[Tensor, dict[str, float]]:
        c = self.cfg
        replay = c.adv_replay_dropout

        def forward(inputs_embeds: Tensor) -> Tensor:
            return ctx.forward(inputs_embeds, replay_dropout=replay)

        ascent = virtual_adversarial_perturbation(
            forward,
            ctx.embeds,
            ctx.logits,
            ctx.mask,
            ctx.divergence,
            sigma=c.adv_init_mag,
            step_size=c.adv_lr,
            eps=c.adv_eps,
            steps=c.adv_steps,
            norm=c.adv_norm,
            level=c.adv_norm_level,
        )
        if ascent.skipped:
            return self._skip(ctx)
        self.last_delta = ascent.delta  # for inspection in tests: (B, T, H)
        adv_out = forward(ctx.embeds + ascent.delta)  # attached: gradients through x̃ and θ
        r_s = ctx.divergence(adv_out, ctx.logits)  # gradients through both branches
        if not torch.isfinite(r_s):
            return self._skip(ctx)
        delta_norm = norm_of(ascent.delta, c.adv_norm, c.adv_norm_level).max().item()
        return c.adv_weight * r_s, {
            "adv_loss": r_s.item(),
            "adv_delta_norm": delta_norm,  # max over tokens/examples of ‖δ‖ (≤ ε)
            "adv_skipped_total": float(self.skipped),
        }

    def _skip(self, ctx: StepContext) -> tuple[Tensor, dict[str, float]]:
        """A NaN/inf in the ascent: no R_s this step (nothing reaches the weights); counted."""
        self.skipped += 1
        return zero_loss(ctx), {"adv_skipped_total": float(self.skipped)}

    def state_dict(self) -> dict[str, int]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state: dict) -> None:
        self.skipped = int(state.get("skipped", 0))
