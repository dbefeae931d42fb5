"""FreeAT: "free" adversarial training; the perturbation's gradient comes from the weight update's
own backward, and each minibatch is replayed m times.

Shafahi, Najibi, Ghiasi, Xu, Dickerson, Studer, Davis, Taylor & Goldstein, 2019, "Adversarial
Training for Free!" (NeurIPS), Algorithm 1:

    δ ← 0
    for epoch = 1 .. N_ep / m:  for each minibatch B:  repeat m times:
        g_θ, g_δ ← ∇_θ, ∇_δ L(x + δ; θ)          (one backward gives both)
        θ ← θ − τ·g_θ                             (an optimizer step per replay)
        δ ← clip_ε(δ + ε · sign(g_δ))

Here: `replays = m` (--freeat_replays) makes the trainer replay each batch of the tasks that use
FreeAT m times with an optimizer step each, while FreeAT is active (not during --adv_warmup_steps
or before --adv_start_epoch); other tasks' batches are trained once. The trainer's step budget is
epochs × batches, so a single-task run makes epochs/m data passes and its total budget matches
plain training. δ is a leaf tensor in the trainer's single backward, which fills δ.grad for free;
`on_optimizer_step` then takes the ascent step δ ← Π_ε(δ + η·sign(g)) under ℓ∞, the paper's step
(every coordinate moves by η), or δ ← Π_ε(δ + η·g/‖g‖₂) under ℓ2.

δ carries over between replays and batches. Text batches differ in shape, so δ lives in a
(B_max, T_max, H) buffer that grows to the largest batch seen: a (B, T) batch uses its top-left
corner, masked to its real tokens and projected onto the ε-ball (after a shorter batch, a longer
one's corner holds that batch's new values followed by older ones, whose sum can leave the ball),
and only its real tokens are updated. As with images in the paper, the perturbation a new batch
inherits was found for other examples. The buffer is in `state_dict()`, so a checkpoint that saves
regularizer state resumes it. As published, the step trains on λ·L(x + δ) alone;
--adv_keep_clean_loss adds L(x).
Paper defaults (CIFAR-10, ℓ∞): ε = 8/255, step = ε, m = 8. mtadv's: ℓ∞ per token in the embedding
space, ε = η = 0.003, m = 2 (flags: --freeat_replays, --adv_space, --adv_eps, --adv_lr, --adv_norm,
--adv_norm_level, --adv_weight).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mtadv.adversarial.base import ADV_METHODS, Regularizer, StepContext
from mtadv.adversarial.embedding_attack import task_loss_at
from mtadv.adversarial.perturb import ascend, norm_of, project
from mtadv.config import AdvConfig, setting


@ADV_METHODS.register("freeat")
class FreeAT(Regularizer):
    """λ · L(x + δ) with δ carried across replays and batches and updated after each step."""

    name = "freeat"
    strength = ("adv_eps", "adv_lr")
    at_zero_perturbation = "clean_loss"
    # The paper's step = ε, in the token ball FGM and PGD moved to: ℓ∞ per token in the embedding space,
    # ε = η = 0.003 of each token's RMS. At the text methods' scale (ℓ2 per example on the raw word embeddings,
    # ε = η = 1) full-data RTE scored below its majority class (docs/methods/freeat.md).
    defaults = {
        "adv_space": "embedding",
        "adv_eps": 0.003,
        "adv_lr": 0.003,
        "adv_norm": "linf",
        "adv_norm_level": "token",
    }
    settings = {
        "freeat_replays": setting(
            2,
            "FreeAT: trains each batch of its task m times, an optimizer step each (the step budget stays "
            "epochs × batches, so every task sees fewer passes)",
            ge=1,
        )
    }

    @property
    def replaces_task_loss(self) -> bool:  # trains on the adversarial loss alone unless --adv_keep_clean_loss
        return not self.cfg.adv_keep_clean_loss

    def __init__(self, cfg: AdvConfig) -> None:
        super().__init__(cfg)
        self.replays = max(1, cfg.freeat_replays)
        self.buffer: Tensor | None = None  # (B_max, T_max, H)
        self.pending: list[tuple[Tensor, Tensor]] = []  # (δ leaf (B, T, H), mask (B, T, 1)) since the last step
        self.pending_step = -1

    def loss(self, ctx: StepContext) -> tuple[Tensor, dict[str, float]]:
        c = self.cfg
        if ctx.step != self.pending_step:  # a skipped (non-finite) step leaves stale leaves behind
            self.pending, self.pending_step = [], ctx.step
        mask = ctx.mask
        corner = project(self._corner(ctx.embeds) * mask, c.adv_eps, c.adv_norm, c.adv_norm_level)
        delta = corner.requires_grad_(True)  # (B, T, H) leaf, inside the ε-ball
        self.pending.append((delta, mask))
        self.last_delta = delta.detach()
        adv_loss = task_loss_at(ctx, delta, replay=c.adv_replay_dropout)
        delta_norm = norm_of(self.last_delta, c.adv_norm, c.adv_norm_level).max().item()
        return c.adv_weight * adv_loss, {"adv_loss": adv_loss.item(), "adv_delta_norm": delta_norm}

    def on_optimizer_step(self, model: nn.Module) -> None:
        """δ ← Π_ε(δ + η·sign(g)) (ℓ∞) or Π_ε(δ + η·g/‖g‖₂), g = δ.grad from the step's backward, into the buffer."""
        c = self.cfg
        for delta, mask in self.pending:
            if delta.grad is None:
                continue
            # δ.grad is scaled by the fp16 GradScaler like every gradient of that backward: the step's
            # direction does not depend on the scale, and a non-finite step never reaches this hook
            grad = delta.grad.float()
            new = ascend(delta, grad, c.adv_lr, c.adv_eps, mask, c.adv_norm, c.adv_norm_level, sign=True)
            b, t = delta.shape[:2]
            self.buffer[:b, :t] = torch.where(mask.bool(), new, self.buffer[:b, :t])
        self.pending = []

    def _corner(self, embeds: Tensor) -> Tensor:
        """A copy of the buffer's top-left (B, T) corner; the buffer grows (zero-filled) to fit the batch."""
        b, t, h = embeds.shape
        old = self.buffer.to(embeds) if self.buffer is not None else embeds.new_zeros(0, 0, h)
        if old.shape[0] < b or old.shape[1] < t:
            grown = embeds.new_zeros(max(b, old.shape[0]), max(t, old.shape[1]), h)
            grown[: old.shape[0], : old.shape[1]] = old
            old = grown
        self.buffer = old
        return old[:b, :t].clone()

    def state_dict(self) -> dict[str, Any]:
        return {"delta": None if self.buffer is None else self.buffer.detach().cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer = state.get("delta")
