"""AWP: adversarial weight perturbation; the loss at perturbed weights, not perturbed inputs.

Wu, Xia & Wang, 2020, "Adversarial Weight Perturbation Helps Robust Generalization" (NeurIPS),
Eq. (4)-(9) and Algorithm 1, with the per-layer relative step of their code and the clamp of the
widely used fine-tuning variant:

    g_l = ∇_{w_l} L(x; θ)                                      (l: each selected weight)
    v_l = clamp(η · ‖w_l‖ · g_l/‖g_l‖,  −ε·|w_l|,  +ε·|w_l|)    (element-wise clamp)
    loss = λ · L(x; θ + v),   v detached (the gradient at θ + v is applied to θ)
    (--adv_keep_clean_loss adds L(x; θ), as the popular fine-tuning recipe does)

The perturbed forward is `torch.func.functional_call(model, {name: w + v})`: the weights are
never modified in place, so the clean graph stays valid, one backward covers both losses, and
the weights are bit-exactly what they were. g comes from `torch.autograd.grad` on the clean
graph (retain_graph), so no weight gradient is accumulated outside the trainer's backward; it is
taken on the loss times the fp16 GradScaler's scale and unscaled in fp32, and a non-finite g leaves
the weights unperturbed for the step (logged as adv_nonfinite_grads).
Which weights: --adv_weight_pattern, a regex over parameter names (default: the encoder layers'
Linear weights; not LayerNorm, not the embeddings, not the heads). --adv_start_epoch delays it.
Paper defaults: γ = η = 5e-3 (no clamp; ε = ∞), one ascent step. Fine-tuning recipes: η = 1e-3 to 1,
ε = 1e-2, start after the first epoch. mtadv's: γ = 1e-4, unclamped, the step that trains MiniLM on
full-data GLUE (flags: --adv_lr, --adv_eps, --adv_start_epoch, --adv_weight).
"""

from __future__ import annotations

import contextlib
import math
import re

import torch
from torch import Tensor, nn
from torch.func import functional_call

from mtadv.adversarial.base import ADV_METHODS, Regularizer, StepContext
from mtadv.adversarial.perturb import TINY, all_finite, scaled_grad
from mtadv.config import setting
from mtadv.errors import ConfigError


def select_weights(model: nn.Module, pattern: str) -> dict[str, Tensor]:
    """The trainable parameters whose names match the pattern (re.search)."""
    chosen = {n: p for n, p in model.named_parameters() if p.requires_grad and re.search(pattern, n)}
    if not chosen:
        raise ConfigError(
            f"matches no trainable parameter; names look like {next(iter(dict(model.named_parameters())))!r}",
            field="--adv_weight_pattern",
        )
    return chosen


@ADV_METHODS.register("awp")
class AWP(Regularizer):
    """λ · L(x; θ + v), v the clamped relative ascent step on the selected weights."""

    name = "awp"
    strength = ("adv_lr",)
    at_zero_perturbation = "clean_loss"
    space = None  # perturbs weights, not an input: the clean forward takes any space
    perturbs = "weights"
    # γ = 1e-4 relative to each weight's norm, unclamped (ε = ∞, as in the paper). The paper's γ = 5e-3 (and 1e-3)
    # held MiniLM at one class for every input on full-data GLUE; 1e-4 trains (docs/methods/awp.md).
    defaults = {"adv_lr": 1e-4, "adv_eps": math.inf}
    settings = {
        "adv_weight_pattern": setting(
            r"^encoder\.(encoder|transformer)\.layers?\.\d+\.(?!.*(LayerNorm|layer_norm)).*\.weight$",
            "AWP: regex (re.search) over parameter names choosing the weights to perturb "
            "(default: the encoder layers' Linear weights, not LayerNorm, not embeddings, not heads)",
        )
    }

    @property
    def replaces_task_loss(self) -> bool:  # trains on the adversarial loss alone unless --adv_keep_clean_loss
        return not self.cfg.adv_keep_clean_loss

    def loss(self, ctx: StepContext) -> tuple[Tensor, dict[str, float]]:
        c = self.cfg
        weights = select_weights(ctx.model, c.adv_weight_pattern)
        # on the loss times the fp16 GradScaler's scale, unscaled in fp32; a non-finite g leaves the weights at θ
        grads = scaled_grad(ctx.task_loss, list(weights.values()), ctx.grad_scale, retain_graph=True, allow_unused=True)
        finite = all_finite(grads)
        pairs = zip(weights.items(), grads) if finite else ()
        deltas = {n: self.weight_step(w.detach(), g) for (n, w), g in pairs if g is not None}
        self.last_weight_delta = deltas  # name -> detached v, for inspection
        perturbed = {n: weights[n] + v for n, v in deltas.items()}  # attached to w: ∇ at θ + v trains θ
        with ctx.rng.replay() if c.adv_replay_dropout else contextlib.nullcontext():
            logits = functional_call(ctx.model, perturbed, args=(ctx.batch,), kwargs=_forward_kwargs(ctx))
        adv_loss = ctx.loss_fn(logits, ctx.batch["labels"])
        rel = max((v.norm() / (weights[n].norm() + TINY)).item() for n, v in deltas.items()) if deltas else 0.0
        logs = {"adv_loss": adv_loss.item(), "adv_weight_delta_rel": rel}
        if not finite:
            logs["adv_nonfinite_grads"] = 1.0
        return c.adv_weight * adv_loss, logs

    def weight_step(self, w: Tensor, g: Tensor) -> Tensor:
        """v = clamp(η·‖w‖·g/‖g‖, ±ε·|w|), detached."""
        c = self.cfg
        v = (c.adv_lr * w.float().norm() * g / (g.norm() + TINY)).to(w.dtype)  # g: fp32
        if math.isinf(c.adv_eps):  # the paper's unclamped step (inf·|w| would be NaN where w = 0)
            return v.detach()
        bound = c.adv_eps * w.abs()
        return torch.minimum(torch.maximum(v, -bound), bound).detach()


def _forward_kwargs(ctx: StepContext) -> dict:
    """The forward re-runs from the input ids: ctx.embeds lives in the task's perturbation space (the
    embedding space's normalized output, beside an input-space method), which is no `inputs_embeds`.
    Recomputing also lets a pattern that matches the word embeddings perturb them."""
    return {"task": ctx.task.name}
