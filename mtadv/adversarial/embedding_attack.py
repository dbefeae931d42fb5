"""Losses and gradients at perturbed word embeddings x + δ, shared by the input-space methods.

Every extra forward goes through `ctx.forward` (the unwrapped model, optionally replaying the
clean forward's dropout masks), and every inner gradient is `torch.autograd.grad` w.r.t. δ or
x only, so no weight gradient is produced outside the trainer's single backward.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtadv.adversarial.base import StepContext


def task_loss_at(ctx: StepContext, delta: Tensor, attached: bool = True, replay: bool = True) -> Tensor:
    """The task loss at x + δ. attached=False cuts x from the embedding matrix (inner ascent steps)."""
    x = ctx.embeds if attached else ctx.embeds.detach()  # (B, T, H)
    return ctx.loss_fn(ctx.forward(x + delta, replay_dropout=replay), ctx.batch["labels"])


def input_grad(loss: Tensor, delta: Tensor, retain_graph: bool = False) -> Tensor:
    """∂loss/∂δ (B, T, H); weights get no gradient."""
    (grad,) = torch.autograd.grad(loss, [delta], retain_graph=retain_graph)
    return grad


def clean_input_grad(ctx: StepContext) -> Tensor:
    """∇ₓL at δ = 0, reusing the clean forward's graph (no extra forward; the graph is kept)."""
    return input_grad(ctx.task_loss, ctx.embeds, retain_graph=True)
