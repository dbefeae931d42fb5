"""SMART's momentum Bregman proximal point: an EMA teacher and its divergence term.

Jiang et al., 2020, "SMART", Eq. (3) and Algorithm 1 (the "vanilla" Bregman proximal point
with momentum):

    θ_{t+1} = argmin_θ  F(θ) + μ · D_Breg(θ, θ̃_t),   D_Breg(θ, θ̃) = 1/n Σ_i ℓ_s(f(x_i; θ), f(x_i; θ̃))
    θ̃_{t+1} = β θ̃_t + (1 − β) θ_{t+1}                                   (after each optimizer step)

One teacher θ̃ is shared by every task (it is a copy of the whole multi-task model); μ may differ
per task (`bregman_mu`, overridable in a task's `adv:`). The teacher adds one forward under
`no_grad` per micro-step. The student's side of the term is the training forward, with dropout, so
by default (`bregman_replay_dropout`) the teacher runs with the same dropout masks, replayed from the
clean forward's RNG state: a teacher equal to the student then gives exactly 0 and the term is the
teacher's lag alone. With `bregman_replay_dropout false` the teacher runs in eval mode (no dropout,
cheaper), and the term also holds the student's dropout noise. The averaging is
`torch.optim.swa_utils.AveragedModel`, buffers included, with `ema_with_warmup(β)` (β_n =
min(β, (1+n)/(10+n)); `bregman_beta_warmup false`: the paper's constant β via
`get_ema_multi_avg_fn(β)`).

Paper settings: μ = 1, β = 0.99 (flags --bregman_mu, --bregman_beta); the teacher starts at step 0
as in the paper. --bregman_start_step and --bregman_ramp_steps start it later or ramp μ in: a
teacher whose task head is freshly initialized predicts near-uniformly, and μ = 1 from step 0
pulls the student toward that. A later start (re)initializes the teacher to the student at the
start step, then averages from there.

Registered as the method `bregman`, shared by tasks (`shared_by_tasks`, built once by `for_run`): every
task whose μ > 0 adds the term after its own method (`--smart` is `--adv smart` plus μ = 1; `--adv fgm
--bregman_mu 1` works the same), and `--adv bregman` is plain fine-tuning plus the term at μ = 1. Its
"perturbation" is in time: θ̃ is the student's past, so at creation (zero lag) the term is exactly 0.
Docs: docs/methods/bregman.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from mtadv.adversarial.base import ADV_METHODS, Regularizer, StepContext
from mtadv.config import AdvConfig, RunConfig, TeacherConfig
from mtadv.errors import ConfigError


def warmup_beta(beta: float, n_averaged: int) -> float:
    """β_n = min(β, (1 + n)/(10 + n)): the teacher tracks the student closely at first, then averages
    over ~1/(1−β) steps (TensorFlow's ExponentialMovingAverage num_updates rule)."""
    return min(beta, (1 + n_averaged) / (10 + n_averaged))


def ema_with_warmup(beta: float):
    """AveragedModel multi_avg_fn: θ̃ ← β_n θ̃ + (1 − β_n) θ with β_n from warmup_beta."""

    @torch.no_grad()
    def update(averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        if not averaged[0].is_floating_point():  # integer buffers (position ids): copy, never average
            torch._foreach_copy_(averaged, current)
            return
        decay = warmup_beta(beta, int(num_averaged))
        torch._foreach_lerp_(averaged, current, 1.0 - decay)

    return update


@ADV_METHODS.register("bregman")
class BregmanTeacher(Regularizer):
    """μ_task · ℓ_s(f(x; θ), f(x; θ̃)) with θ̃ the EMA of θ; one instance shared by all tasks."""

    name = "bregman"
    strength = ("bregman_mu",)
    space = None  # perturbs no input: the clean forward takes any task's space
    perturbs = "weights_in_time"  # θ̃ is the student's own past, so the "perturbation" is the teacher's lag
    at_zero_perturbation = "zero"  # zero lag (θ̃ = θ, as at creation) with replayed dropout: exactly 0
    shared_by_tasks = True  # one EMA model for the whole run, next to each task's own method
    # `--adv bregman`: plain fine-tuning plus the term at the paper's μ = 1 (SMART, Sec. 5); a task on another
    # method adds it with its own --bregman_mu, 0 by default.
    defaults = {"bregman_mu": 1.0}

    def __init__(
        self, cfg: AdvConfig, teacher: TeacherConfig | None = None, mu_by_task: Mapping[str, float] | None = None
    ) -> None:
        """cfg: a task's settings (its bregman_mu is μ for every task unless `mu_by_task` names them); teacher:
        the run's teacher settings (β, start, ramp, dropout replay); mu_by_task: task -> μ (`for_run`)."""
        super().__init__(cfg)
        self.teacher_cfg = teacher if teacher is not None else TeacherConfig()
        self.mu_by_task = None if mu_by_task is None else dict(mu_by_task)
        self.averaged: AveragedModel | None = None  # built at the start step from the student
        self._pending: dict[str, Any] | None = None  # loaded state waiting for a model to copy

    @classmethod
    def for_run(cls, run: RunConfig, advs: Mapping[str, AdvConfig]) -> dict[str, Regularizer]:
        """ONE teacher for every task with μ > 0, whatever its method (the trainer runs its hooks once)."""
        for task, adv in advs.items():
            if adv.bregman_mu < 0:
                raise ConfigError(f"bregman_mu must be >= 0, got {adv.bregman_mu}", task=task, field="bregman_mu")
        if not 0.0 <= run.teacher.bregman_beta < 1.0:
            raise ConfigError(f"must be in [0, 1), got {run.teacher.bregman_beta}", field="--bregman_beta")
        users = {task: adv.bregman_mu for task, adv in advs.items() if adv.bregman_mu > 0}
        if not users:
            return {}
        teacher = cls(AdvConfig(adv=cls.name), run.teacher, users)
        return dict.fromkeys(users, teacher)

    # ------------------------------------------------------------ schedule
    def active(self, step: int, epoch: int) -> bool:
        return step >= self.teacher_cfg.bregman_start_step

    def weight(self, task: str, step: int) -> float:
        """μ for the task, ramped linearly over bregman_ramp_steps after the start step."""
        mu = self.cfg.bregman_mu if self.mu_by_task is None else self.mu_by_task.get(task, 0.0)
        ramp = self.teacher_cfg.bregman_ramp_steps
        if ramp <= 0:
            return mu
        return mu * min(1.0, (step - self.teacher_cfg.bregman_start_step + 1) / ramp)

    # ------------------------------------------------------------ the term
    @property
    def teacher(self) -> nn.Module | None:
        """The averaged multi-task model (eval mode), or None before the start step."""
        return None if self.averaged is None else self.averaged.module

    def loss(self, ctx: StepContext) -> tuple[Tensor, dict[str, float]]:
        self._ensure_teacher(ctx.model)
        teacher = self.teacher
        with torch.no_grad():
            target = self._teacher_output(teacher, ctx)  # (B, C) or (B,): f(x; θ̃)
        breg = ctx.divergence(ctx.logits, target)  # gradient through the student only
        mu = self.weight(ctx.task.name, ctx.step)
        return mu * breg, {"bregman_loss": breg.item(), "bregman_mu": mu}

    def _teacher_output(self, teacher: nn.Module, ctx: StepContext) -> Tensor:
        """f(x; θ̃): in eval mode, or (bregman_replay_dropout) in train mode with the clean forward's
        dropout masks replayed, so that a teacher equal to the student gives a term of exactly 0."""
        if not self.teacher_cfg.bregman_replay_dropout:
            return teacher(ctx.batch, task=ctx.task.name)
        teacher.train(ctx.model.training)  # dropout exactly where the student's clean forward had it
        try:
            with ctx.rng.replay():
                return teacher(ctx.batch, task=ctx.task.name)
        finally:
            teacher.eval()

    def on_optimizer_step(self, model: nn.Module) -> None:
        if self._pending is not None:  # resumed after the start step: restore θ̃ before averaging
            self._ensure_teacher(model)
        if self.averaged is not None:
            self.averaged.update_parameters(model)  # θ̃ ← βθ̃ + (1−β)θ (parameters and buffers)

    def _ensure_teacher(self, model: nn.Module) -> None:
        if self.averaged is not None:
            return
        beta = self.teacher_cfg.bregman_beta
        avg_fn = ema_with_warmup(beta) if self.teacher_cfg.bregman_beta_warmup else get_ema_multi_avg_fn(beta)
        averaged = AveragedModel(model, multi_avg_fn=avg_fn, use_buffers=True)  # deep copy: θ̃_0 = θ
        averaged.update_parameters(model)  # n_averaged 0 -> 1 (the first update copies)
        averaged.eval().requires_grad_(False)
        self.averaged = averaged
        if self._pending is not None:
            averaged.load_state_dict(self._pending)
            self._pending = None

    # ------------------------------------------------------------ checkpoints
    @staticmethod
    def weights_from_state(state: dict[str, Any]) -> dict[str, Tensor]:
        """The teacher's MultiTaskModel state_dict from a saved `state_dict()` (AveragedModel keys)."""
        return {k.removeprefix("module."): v for k, v in state.items() if k.startswith("module.")}

    def state_dict(self) -> dict[str, Any]:
        if self.averaged is None:
            return dict(self._pending or {})
        return {k: v.detach().cpu().clone() for k, v in self.averaged.state_dict().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            self.averaged, self._pending = None, None
        elif self.averaged is not None:
            self.averaged.load_state_dict(state)
        else:
            self._pending = dict(state)  # materialized when the model is next seen
