"""SMART's smoothness-inducing adversarial regularizer R_s.

Jiang et al., 2020, "SMART: Robust and Efficient Fine-Tuning for Pre-trained Natural Language
Models through Principled Regularized Optimization" (ACL), Eq. (2) and Algorithm 1:

    R_s(θ) = 1/n Σ_i  max_{‖x̃_i − x_i‖_p ≤ ε}  ℓ_s(f(x̃_i; θ), f(x_i; θ))

What this module does, by projected gradient ascent on x = ctx.embeds (the tensor of the task's
perturbation space, --adv_space: the raw word embeddings by default; perturbed once, never
re-embedded):
    δ ← Π_ε(v),  v ~ N(0, σ²I)                                  (masked to real tokens)
    repeat K times:  g ← ∇_δ ℓ_s(f(x + δ), sg(f(x)));  δ ← Π_ε(δ + η·g/‖g‖)
    R_s = ℓ_s(f(x + δ), f(x))                                   (gradient through both branches)
‖g‖ is taken per token or per example (--adv_norm_level); under ℓ∞ the step is η·g/‖g‖∞, the
reference code's normalization (it moves the largest coordinate by η; not sign(g)). Π_ε clamps
(ℓ∞) or rescales (ℓ2) onto the ε-ball: ε is a radius. g is taken on ℓ_s times the fp16 GradScaler's
scale and unscaled in fp32. ℓ_s is the task's adversarial divergence: symmetric KL for
classification, with each KL term's target detached as in the reference criterion
(mtadv/losses.py), so λ_s weighs the term as there; squared error for regression. A non-finite
ascent gradient or R_s skips the term for the step (counted, adv_skipped_total).
Paper defaults (Sec. 5, implementation details): σ = 1e-5, η = 1e-3, ε = 1e-5, K = 1, ℓ∞
normalization, λ_s = 1 (flags --adv_init_mag, --adv_lr, --adv_eps, --adv_steps, --adv_norm,
--adv_weight; --smart sets them all).

Under autocast (bf16, fp16) the ascent's forwards and backwards run in fp32, against the clean
output recomputed in fp32 (one extra forward without a graph, the same dropout masks): the first
gradient is taken at x + v with σ = 1e-5, a change below half precision's resolution (bf16 keeps 8
significant bits, fp16 11) on embeddings whose coordinates are of order 1e-2, so a half-precision
forward would round most of it away and its gradient would be mostly rounding error. R_s's own
forward at x + δ, which trains the weights, runs under the step's autocast.

What the reference implementation does (MT-DNN, mt_dnn/perturbation.py, SmartPerturbation):
- the tensor perturbed is the embedding layer's output, `bert.embeddings(input_ids,
  token_type_ids)`: word + position + token-type embeddings, LayerNorm and dropout; the noise
  v = N(0, 1)·σ covers padding too;
- the ascent differentiates a one-sided KL, stable_kl(f(embed + v), f(x).detach()), and then sets
  `delta_grad = noise + delta_grad * self.step_size; noise, eff_noise = self._norm_grad(delta_grad,
  ...)`, i.e. the noise fed in is (v + η·g) / (‖v + η·g‖∞ + ε) per token. Nothing is projected:
  ε (adv_epsilon, 1e-6) only guards that division, and the noise has ℓ∞ ≈ 1 per token whatever
  η and ε are. With σ = 1e-5, where η·g is small next to v, it is mostly the initial noise
  rescaled to unit ℓ∞;
- the model is run at embed + noise through the encoder's `inputs_embeds` (since February 2021),
  so position and token-type embeddings and the embedding LayerNorm are applied a second time on
  top of an already embedded input;
- R_s is SymKlCriterion(logits, adv_logits) · adv_alpha, each term's target detached;
- at the current head its positional calls `model(*vat_args)` bind the forward-type flags (1, 2)
  to the `y_input_ids` parameter added before `fwd_type` in September 2021, so that path no longer
  runs as described above.
The flags here set a radius, a step and a noise scale in the chosen space; none of their settings
is the reference's computation.

`virtual_adversarial_perturbation` is the shared ascent: ALUM (MLM) runs the same code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from mtadv.adversarial.base import ADV_METHODS, Regularizer, StepContext, zero_loss
from mtadv.adversarial.perturb import (
    all_finite,
    full_precision_target,
    gaussian_noise,
    norm_of,
    normalize,
    project,
    scaled_grad,
)
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
    grad_scale: float = 1.0,
) -> AscentResult:
    """Find δ (‖δ‖ ≤ ε) that maximizes divergence(forward(embeds + δ), target).

    embeds: (B, T, H) clean embeddings (detached here); target: the clean output; mask: (B, T, 1).
    Gradients are taken w.r.t. δ only, so no weight gradients are computed and the caller's single
    backward stays the only one. The ascent runs in fp32 with autocast off, against the clean output
    recomputed in fp32 when autocast made it half precision (module docstring); each gradient is
    taken on divergence × grad_scale (the fp16 GradScaler's scale) and unscaled in fp32.
    """
    x = embeds.detach().float()
    with torch.autocast(x.device.type, enabled=False):
        target = full_precision_target(forward, x, target)
        delta = project(gaussian_noise(x, sigma, mask), eps, norm, level)  # x̃ = x + v, kept inside the ball
        for _ in range(steps):
            delta.requires_grad_(True)
            div = divergence(forward(x + delta), target)
            grad = scaled_grad(div, [delta], grad_scale)  # [(B, T, H)] in fp32
            if not all_finite(grad):
                return AscentResult(None, skipped=True)
            step = step_size * normalize(grad[0], norm, level) * mask  # ℓ∞: g/‖g‖∞ as the reference, not sign(g)
            delta = project(delta.detach() + step, eps, norm, level)
    return AscentResult(delta.detach().to(embeds.dtype), skipped=False)


@ADV_METHODS.register("smart")
class SmartRegularizer(Regularizer):
    """λ_s · R_s, with ℓ_s the task's adversarial divergence (task definition `adv_loss`)."""

    name = "smart"
    at_zero_perturbation = "zero"

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
            grad_scale=ctx.grad_scale,
        )
        if ascent.skipped:
            return self._skip(ctx)
        self.last_delta = ascent.delta  # for inspection in tests: (B, T, H)
        adv_out = forward(ctx.embeds + ascent.delta)  # attached: gradients through x̃ and θ
        r_s = ctx.divergence(adv_out, ctx.logits)  # through both branches (sym_kl: each term's target detached)
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
