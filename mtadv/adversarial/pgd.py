"""PGD: K projected gradient-ascent steps in a perturbation space (the embedding space by default).

Madry, Makelov, Schmidt, Tsipras & Vladu, 2018, "Towards Deep Learning Models Resistant to
Adversarial Attacks" (ICLR), Eq. (2.1) and Sec. 3:

    min_θ E[ max_{‖δ‖≤ε} L(x + δ; θ) ],   δ_0 ~ U(ball),
    δ_{k+1} = Π_{‖δ‖≤ε}(δ_k + α · sign(g_k))        (ℓ∞: every coordinate moves by α)
    δ_{k+1} = Π_{‖δ‖≤ε}(δ_k + α · g_k/‖g_k‖₂)       (ℓ2),   g_k = ∇_δ L(x + δ_k; θ)

x is each example's tensor in the task's perturbation space (B, T, H), masked to real tokens. Only the final
adversarial loss L(x + δ_K) trains the weights: the K ascent steps take gradients w.r.t. δ alone
(torch.autograd.grad) on x detached from the encoder below it, and their graphs are freed at
once. With --adv_init_mag 0 the first step reuses the clean graph (δ_0 = 0). Inner gradients are
taken on the loss times the fp16 GradScaler's scale and unscaled in fp32; a non-finite one ends the
ascent where it is (logged as adv_nonfinite_grads). As published, the step trains on λ·L(x + δ_K)
alone; --adv_keep_clean_loss adds L(x), as fine-tuning recipes do.
Paper defaults (CIFAR-10, ℓ∞): ε = 8/255, α = 2/255, K = 7, random start. Text recipes: ℓ2 per
example on the word embeddings, ε = 1.0, α = 0.3, K = 3. mtadv's: ℓ∞ per token in the embedding
space, ε = 0.003, α = 0.0015, K = 3, from δ = 0 (flags: --adv_space, --adv_eps, --adv_lr,
--adv_steps, --adv_init_mag, --adv_norm, --adv_norm_level, --adv_weight).
"""

from __future__ import annotations

from torch import Tensor

from mtadv.adversarial.base import ADV_METHODS, Regularizer, StepContext
from mtadv.adversarial.embedding_attack import clean_input_grad, input_grad, task_loss_at
from mtadv.adversarial.perturb import ascend, norm_of, project, uniform_init


@ADV_METHODS.register("pgd")
class PGD(Regularizer):
    """λ · L(x + δ_K), δ_K from K projected ascent steps inside the ε-ball."""

    name = "pgd"
    strength = ("adv_eps", "adv_lr")
    at_zero_perturbation = "clean_loss"
    # Calibrated on full-data GLUE (docs/methods/pgd.md): ℓ∞ per token in the embedding space, ε = 0.003 of each
    # token's RMS, α = ε/2 so that K = 3 steps from δ = 0 reach the boundary. The text recipe's ε = 1 (ℓ2 per
    # example on the raw word embeddings) ended at one class for every input on MiniLM.
    defaults = {"adv_space": "embedding", "adv_eps": 0.003, "adv_lr": 0.0015, "adv_steps": 3, "adv_init_mag": 0.0,
                "adv_norm": "linf", "adv_norm_level": "token"}  # fmt: skip

    @property
    def replaces_task_loss(self) -> bool:  # trains on the adversarial loss alone unless --adv_keep_clean_loss
        return not self.cfg.adv_keep_clean_loss

    def loss(self, ctx: StepContext) -> tuple[Tensor, dict[str, float]]:
        c = self.cfg
        delta = self.attack(ctx)
        self.last_delta = delta  # (B, T, H), detached, for inspection
        adv_loss = task_loss_at(ctx, delta, replay=c.adv_replay_dropout)
        delta_norm = norm_of(delta, c.adv_norm, c.adv_norm_level).max().item()
        logs = {"adv_loss": adv_loss.item(), "adv_delta_norm": delta_norm}
        if self.nonfinite:
            logs["adv_nonfinite_grads"] = 1.0
        return c.adv_weight * adv_loss, logs

    def attack(self, ctx: StepContext) -> Tensor:
        """δ_K (B, T, H), detached; no weight gradients. A non-finite inner gradient stops the ascent."""
        c, mask = self.cfg, ctx.mask
        delta = uniform_init(ctx.embeds.detach(), c.adv_init_mag, mask, c.adv_norm, c.adv_norm_level)
        delta = project(delta, c.adv_eps, c.adv_norm, c.adv_norm_level)
        self.nonfinite = False
        for k in range(c.adv_steps):
            if k == 0 and c.adv_init_mag == 0:
                grad = clean_input_grad(ctx)  # L(x + 0) is the clean loss
            else:
                delta.requires_grad_(True)
                loss = task_loss_at(ctx, delta, attached=False, replay=c.adv_replay_dropout)
                grad = input_grad(loss, delta, ctx.grad_scale)
            if grad is None:
                self.nonfinite = True
                break
            delta = ascend(delta, grad, c.adv_lr, c.adv_eps, mask, c.adv_norm, c.adv_norm_level, sign=True)
        return delta.detach()
