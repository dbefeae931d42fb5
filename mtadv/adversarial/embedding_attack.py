"""Losses and gradients at perturbed inputs x + δ, shared by the input-space methods.

Every extra forward goes through `ctx.forward` (the unwrapped model, optionally replaying the
clean forward's dropout masks), and every inner gradient is `torch.autograd.grad` w.r.t. δ or
x only, so no weight gradient is produced outside the trainer's single backward. Inner
gradients are taken on the loss times `ctx.grad_scale` (the fp16 GradScaler's scale) and
returned unscaled in fp32 (`perturb.scaled_grad`).
"""

from __future__ import annotations

from torch import Tensor

from mtadv.adversarial.base import StepContext
from mtadv.adversarial.perturb import all_finite, scaled_grad


def task_loss_at(ctx: StepContext, delta: Tensor, attached: bool = True, replay: bool = True) -> Tensor:
    """The task loss at x + δ. attached=False detaches x, the perturbation-space tensor, from the encoder (inner ascent steps)."""
    x = ctx.embeds if attached else ctx.embeds.detach()  # (B, T, H)
    return ctx.loss_fn(ctx.forward(x + delta, replay_dropout=replay), ctx.batch["labels"])


def input_grad(loss: Tensor, delta: Tensor, scale: float = 1.0, retain_graph: bool = False) -> Tensor | None:
    """∂loss/∂δ (B, T, H) in fp32, or None when it is not finite (an fp16 overflow at `scale`).

    Weights get no gradient. Callers treat None as "no ascent step": δ stays where it was, and the
    step's own backward (scaled by the same GradScaler) decides whether the step is skipped.
    """
    (grad,) = scaled_grad(loss, [delta], scale, retain_graph=retain_graph)
    return grad if all_finite([grad]) else None


def clean_input_grad(ctx: StepContext) -> Tensor | None:
    """∇ₓL at δ = 0, reusing the clean forward's graph (no extra forward; the graph is kept)."""
    return input_grad(ctx.task_loss, ctx.embeds, ctx.grad_scale, retain_graph=True)
