"""`pgd`: projected gradient ascent on the task loss with the gold label, in a perturbation space.

Madry et al., 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks" (ICLR):
δ_0 = 0;  δ_{k+1} = Π_{‖δ‖≤ε}(δ_k + α·g_k/‖g_k‖)  (sign(g_k) under ℓ∞),  g_k = ∇_δ L(f(x + δ_k), y).
The same spaces, norms and projection as training (mtadv.adversarial.spaces / perturb), on real
tokens only, in eval mode. An example counts as broken when any iterate breaks it (a wrong class,
or for regression the largest squared error), so a larger step budget never makes the model look
more robust, and δ_0 = 0 makes the result never better than the clean one. Cost per batch: K
forward-backward passes (the first is the clean forward, δ_0 = 0; each scores its iterate) and one
forward for δ_K.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from mtadv.adversarial.perturb import project, token_mask
from mtadv.adversarial.spaces import get_space
from mtadv.attacks.base import ATTACKS, Attack, step_size
from mtadv.losses import TASK_LOSSES
from mtadv.taskdef import TaskDef


@contextlib.contextmanager
def frozen_weights(model: nn.Module):
    """No weight takes part in autograd inside the block: only the input gradient is computed."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def ascent_direction(grad: Tensor, norm: str, level: str) -> Tensor:
    """sign(g) under ℓ∞ (Madry's step), g/‖g‖₂ under ℓ2 (per token or per example)."""
    if norm == "linf":
        return grad.sign()
    dims = (-1,) if level == "token" else (-2, -1)
    return grad / grad.float().pow(2).sum(dims, keepdim=True).sqrt().clamp_min(1e-12).to(grad.dtype)


@ATTACKS.register("pgd")
class PGDAttack(Attack):
    name = "pgd"
    kind = "embedding"
    settings_used = ("attack_eps", "attack_steps", "attack_lr", "attack_norm", "attack_norm_level", "attack_space")

    def perturbed_outputs(self, model: nn.Module, batch: dict[str, Tensor], task: TaskDef) -> Tensor:
        c, space = self.cfg, get_space(self.cfg.attack_space)
        loss_fn, labels = TASK_LOSSES.get(task.loss), batch["labels"]
        with frozen_weights(model), torch.enable_grad():
            # δ_0 = 0: the clean forward is the first iterate, differentiable in its leaf `embeds`.
            embeds, out, scale = space.clean_forward(model, model, batch, task.name, leaf=True)
            x, mask = embeds.detach(), token_mask(batch, embeds)  # (B, T, H), (B, T, 1)
            worst, worst_score = out.detach(), _badness(out.detach(), labels)
            delta, wrt = torch.zeros_like(x), embeds  # ∇ at δ_0 is ∇ with respect to the clean leaf
            steps = c.attack_steps if c.attack_eps > 0 else 0
            for k in range(steps):
                if k > 0:
                    wrt = delta.requires_grad_(True)
                    out = space.forward(model, batch, task.name, x + delta, scale)  # at δ_k
                    worst, worst_score = _keep_worse(worst, worst_score, out.detach(), labels)
                (grad,) = torch.autograd.grad(loss_fn(out, labels), [wrt])
                step = step_size(c) * ascent_direction(grad, c.attack_norm, c.attack_norm_level) * mask
                delta = project(delta.detach() + step, c.attack_eps, c.attack_norm, c.attack_norm_level)
            if steps:
                with torch.no_grad():  # the last iterate δ_K, the only one not yet scored
                    out = space.forward(model, batch, task.name, x + delta, scale)
                    worst, worst_score = _keep_worse(worst, worst_score, out, labels)
        return worst


def _badness(out: Tensor, labels: Tensor) -> Tensor:
    """(B,) how badly each example is predicted: 1 for a wrong class (0 right), or the squared error."""
    if out.ndim == 2:
        return (out.argmax(-1) != labels).float()
    return (out.float() - labels.float()).pow(2)


def _keep_worse(worst: Tensor, score: Tensor, out: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Per example, the outputs of the worse of the two (ties keep the earlier one)."""
    new = _badness(out, labels)
    take = new > score
    shape = (-1,) + (1,) * (out.ndim - 1)
    return torch.where(take.view(shape), out, worst), torch.maximum(score, new)
