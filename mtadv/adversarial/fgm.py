"""FGM: the fast gradient method on the input embeddings.

Miyato, Dai & Goodfellow, 2017, "Adversarial Training Methods for Semi-Supervised Text
Classification" (ICLR), Eq. (5)-(6):

    g = ∇ₓ L(x; θ),   r_adv = ε · g / ‖g‖₂,   loss = L(x; θ) + λ · L(x + r_adv; θ)

x is each example's tensor in --adv_space (B, T, H), masked to real tokens; g comes from the clean
forward's graph, so FGM costs one extra forward. The norm is taken per example (the paper's
‖g‖₂ over the sequence) with --adv_norm l2 --adv_norm_level example, or per token as configured.
Under ℓ∞, r_adv = ε · sign(g), the maximizer of the linearized loss in the ℓ∞ ball (Goodfellow,
Shlens & Szegedy's FGSM). g is taken on the loss times the fp16 GradScaler's scale and unscaled in
fp32; a non-finite g gives r_adv = 0 (logged as adv_nonfinite_grads). Paper defaults: ε = 5.0 on unit-normalized embeddings, λ = 1, ℓ2 per example.
Popular fine-tuning recipes use ε ≈ 1.0 on raw BERT embeddings (flags: --adv_eps, --adv_weight,
--adv_norm, --adv_norm_level; --adv_replay_dropout keeps the clean dropout masks).

mtadv's defaults are not those: ℓ∞ per token (FGSM's step) in the embedding space, at ε = 0.003 of each
token's RMS. At the recipe's ε = 1 per example on MiniLM's raw word embeddings, full-data RTE and
MRPC runs ended at one class for every input, and so did RTE at 0.03 in the embedding space; 0.003
is the radius at which they fit like plain (benchmarks/README.md, full-data accuracy).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtadv.adversarial.base import ADV_METHODS, Regularizer, StepContext
from mtadv.adversarial.embedding_attack import clean_input_grad, task_loss_at
from mtadv.adversarial.perturb import ascend, norm_of


@ADV_METHODS.register("fgm")
class FGM(Regularizer):
    """λ · L(x + ε·g/‖g‖)."""

    name = "fgm"
    strength = ("adv_eps",)
    at_zero_perturbation = "clean_loss"
    # Chosen from full-data runs (module docstring): the recipe's ε = 1 on the raw word embeddings, ℓ2 per
    # example, ended at a constant prediction on RTE and MRPC.
    defaults = {"adv_space": "embedding", "adv_eps": 0.003, "adv_norm": "linf", "adv_norm_level": "token"}

    def loss(self, ctx: StepContext) -> tuple[Tensor, dict[str, float]]:
        c = self.cfg
        grad = clean_input_grad(ctx)  # (B, T, H), fp32; None if not finite
        zero = torch.zeros_like(ctx.embeds)
        if grad is None:
            delta = zero
        else:
            delta = ascend(zero, grad, c.adv_eps, c.adv_eps, ctx.mask, c.adv_norm, c.adv_norm_level, sign=True)
        self.last_delta = delta  # (B, T, H), detached, for inspection
        adv_loss = task_loss_at(ctx, delta, replay=c.adv_replay_dropout)
        delta_norm = norm_of(delta, c.adv_norm, c.adv_norm_level).max().item()
        logs = {"adv_loss": adv_loss.item(), "adv_delta_norm": delta_norm}
        if grad is None:
            logs["adv_nonfinite_grads"] = 1.0
        return c.adv_weight * adv_loss, logs
