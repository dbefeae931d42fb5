"""Gradient penalty on the word embeddings, by double backprop.

Drucker & LeCun, 1992, "Improving Generalization Performance Using Double Backpropagation"
(IEEE TNN); Ross & Doshi-Velez, 2018, "Improving the Adversarial Robustness and Interpretability
of Deep Neural Networks by Regularizing their Input Gradients" (AAAI). A first-order view of
adversarial training: L(x + δ) ≈ L(x) + δ·∇ₓL, so penalizing ‖∇ₓL‖ flattens the loss around x.

    R_gp = (ε/2) · 1/B Σ_i ‖∇_{x_i} ℓ_i‖₂²

x_i are example i's word embeddings (T, H), masked to real tokens; ∇_{x_i} ℓ_i is the batch-mean
loss's gradient times B (examples are independent in the encoder), so the penalty does not
shrink with the batch size. `create_graph=True` makes the penalty differentiable w.r.t. θ; the
trainer's single backward then does the double backprop. L(x) is recomputed in one extra forward
with PyTorch's math attention kernel, because fused kernels (CPU flash attention) have no double
backward. ∇ₓ is taken on the loss times the fp16 GradScaler's scale and unscaled in fp32 (inside the
graph, so the penalty stays differentiable); a non-finite one skips the penalty for the step (logged
as adv_nonfinite_grads). ε = 0 gives exactly zero.
Defaults: ε (--adv_eps) is the penalty weight; papers tune it in 1e-3 .. 1 (λ = --adv_weight
multiplies it, like every term).
"""

from __future__ import annotations

from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from mtadv.adversarial.base import ADV_METHODS, Regularizer, StepContext, zero_loss
from mtadv.adversarial.perturb import all_finite, scaled_grad


@ADV_METHODS.register("grad_penalty")
class GradientPenalty(Regularizer):
    """λ · (ε/2) · mean_i ‖∇_{x_i} ℓ_i‖²."""

    name = "grad_penalty"
    strength = ("adv_eps",)
    at_zero_perturbation = "zero"
    # ε is the penalty weight; 0.1 is inside the tuned range 1e-3 .. 1 (the built-in 1e-5 is a no-op).
    defaults = {"adv_eps": 0.1}
    perturbation_radius = None  # no perturbation: nothing to bound

    def loss(self, ctx: StepContext) -> tuple[Tensor, dict[str, float]]:
        c = self.cfg
        batch = ctx.embeds.shape[0]
        # The clean graph may hold fused attention kernels without a double backward (SDPA flash on CPU),
        # so the loss is recomputed with the math kernel (same dropout masks: the same value).
        with sdpa_kernel(SDPBackend.MATH):
            clean = ctx.loss_fn(ctx.forward(ctx.embeds, replay_dropout=True), ctx.batch["labels"])
        (grad,) = scaled_grad(clean * batch, [ctx.embeds], ctx.grad_scale, create_graph=True)  # (B, T, H) fp32
        if not all_finite([grad]):
            return zero_loss(ctx), {"adv_nonfinite_grads": 1.0}
        sq_norm = (grad * ctx.mask).pow(2).sum(dim=(1, 2))  # (B,)
        penalty = 0.5 * c.adv_eps * sq_norm.mean()
        logs = {"adv_loss": penalty.item(), "input_grad_norm": sq_norm.sqrt().mean().item()}
        return c.adv_weight * penalty, logs
