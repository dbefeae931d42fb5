"""FreeLB: K ascent steps whose adversarial losses all train the weights, averaged.

Zhu, Cheng, Gan, Sun, Goldstein & Liu, 2020, "FreeLB: Enhanced Adversarial Training for Natural
Language Understanding" (ICLR), Eq. (3) and Algorithm 1:

    δ_0 = U(−1, 1) · ε_init / √(L·d)                        (real tokens only; ℓ2 init)
    for t = 1..K:
        g_t = ∇_θ L(x + δ_{t−1}) / K       (accumulated: the weight gradient is the mean)
        δ_t = Π_{‖δ‖_F ≤ ε_max}(δ_{t−1} + α · ∇_δ L(x + δ_{t−1}) / ‖∇_δ L‖_F)
    loss = (1/K) Σ_{t<K} L(x + δ_t)

Every step replays the clean forward's dropout masks (`ctx.forward(..., replay_dropout=True)`),
the paper's "same dropout mask in all K steps", without forking any modelling code.

Implementation: the K adversarial losses are returned as one mean, so the trainer's single
backward yields exactly the averaged gradient; ∇_δ between steps comes from
`torch.autograd.grad(..., inputs=[δ], retain_graph=True)`. This holds K graphs at once (memory
grows with K) and recomputes the activation gradients once more than Algorithm 1; it keeps one
backward per micro-step, which DDP needs. ∇_δ is taken on the step loss times the fp16 GradScaler's
scale and unscaled in fp32; a non-finite one leaves δ where it is for the next step (logged as
adv_nonfinite_grads). Under --adv_norm linf the step is α·g/‖g‖∞, as in the authors' code (not
sign(g)). As published, the step trains on λ·(1/K) Σ L(x + δ_t) alone; --adv_keep_clean_loss adds L(x).

Paper defaults (GLUE, RoBERTa-large, Table 7, they vary by task): K = 2-3, α = 1e-1 to 5e-2,
ε_init = 1e-1 to 6e-1, ε_max = 0 (no projection) for most tasks, ℓ2 per example
(flags: --adv_steps, --adv_lr, --adv_init_mag, --freelb_max_norm, --adv_norm l2
--adv_norm_level example; set them per task in the task definition's `adv:`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtadv.adversarial.base import ADV_METHODS, Regularizer, StepContext
from mtadv.adversarial.embedding_attack import input_grad, task_loss_at
from mtadv.adversarial.perturb import ascend, norm_of, project, uniform_init
from mtadv.config import setting


@ADV_METHODS.register("freelb")
class FreeLB(Regularizer):
    """λ · (1/K) Σ_t L(x + δ_t), every term attached to the weights."""

    name = "freelb"
    strength = ("adv_lr", "adv_init_mag")
    at_zero_perturbation = "clean_loss"
    # Inside the paper's GLUE ranges (Table 7): K = 2, α = 1e-1, ε_init = 1e-1, no projection, ℓ2 per example.
    defaults = {"adv_steps": 2, "adv_lr": 0.1, "adv_init_mag": 0.1, "adv_norm": "l2", "adv_norm_level": "example"}
    settings = {
        "freelb_max_norm": setting(
            0.0, "FreeLB: project δ onto this radius after each ascent step (0: no projection)", ge=0
        )
    }

    @property
    def replaces_task_loss(self) -> bool:  # trains on the adversarial loss alone unless --adv_keep_clean_loss
        return not self.cfg.adv_keep_clean_loss

    @property
    def perturbation_radius(self) -> float | None:
        return self.cfg.freelb_max_norm or None

    def loss(self, ctx: StepContext) -> tuple[Tensor, dict[str, float]]:
        c, mask, radius = self.cfg, ctx.mask, self.perturbation_radius
        delta = uniform_init(ctx.embeds.detach(), c.adv_init_mag, mask, c.adv_norm, c.adv_norm_level)
        if radius is not None:
            delta = project(delta, radius, c.adv_norm, c.adv_norm_level)
        self.deltas: list[Tensor] = []  # δ_0 .. δ_{K−1}, detached, for inspection
        total = torch.zeros((), device=ctx.embeds.device)
        nonfinite = 0
        for t in range(c.adv_steps):
            self.deltas.append(delta.detach())
            delta.requires_grad_(True)
            step_loss = task_loss_at(ctx, delta, replay=True) / c.adv_steps  # attached: trains θ
            total = total + step_loss
            if t < c.adv_steps - 1:  # the last δ would never be used
                grad = input_grad(step_loss, delta, ctx.grad_scale, retain_graph=True)
                if grad is None:  # δ stays; a fresh leaf, so the next loss's graph is its own
                    nonfinite += 1
                    delta = delta.detach()
                else:
                    delta = ascend(delta, grad, c.adv_lr, radius, mask, c.adv_norm, c.adv_norm_level)
        self.last_delta = self.deltas[-1]
        delta_norm = norm_of(self.last_delta, c.adv_norm, c.adv_norm_level).max().item()
        logs = {"adv_loss": total.item(), "adv_delta_norm": delta_norm}
        if nonfinite:
            logs["adv_nonfinite_grads"] = float(nonfinite)
        return c.adv_weight * total, logs
