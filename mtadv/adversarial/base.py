"""The interface every regularizer implements, and the per-step context it receives.

A regularizer sees the model, the batch, the task definition and the clean outputs, and
returns a loss (added to the task loss before the step's single backward) plus scalars to log.
Methods that must restructure the step get it through generic hooks, not by the trainer
knowing them by name:
- `replays` > 1: the trainer trains each batch of a task whose active regularizer replays that many
  times, with an optimizer step each (FreeAT); the step budget stays epochs × groups;
- `on_optimizer_step(model)`: after each optimizer step (the EMA teacher's update);
- `state_dict()` / `load_state_dict()`: state carried across steps, saved in checkpoints;
- `shared_by_tasks` with `for_run(run, advs)`: one instance for the whole run, added to every task that
  uses it after the task's own method (the EMA teacher).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mtadv.adversarial.perturb import RngState, token_mask
from mtadv.adversarial.spaces import get_space
from mtadv.config import AdvConfig, RunConfig, Setting
from mtadv.losses import DIVERGENCES, TASK_LOSSES, LossFn
from mtadv.registries import ADV_METHODS as ADV_METHODS  # lives below mtadv.config
from mtadv.taskdef import TaskDef


@dataclass
class StepContext:
    """Everything about the current micro-step that a regularizer may reuse."""

    model: nn.Module  # the unwrapped MultiTaskModel, for extra forwards
    task: TaskDef
    batch: dict[str, Tensor]
    embeds: Tensor  # (B, T, H) the clean tensor methods perturb (its space: `space`), attached to the graph
    logits: Tensor  # clean output: (B, C) logits or (B,) scores, attached to the graph
    task_loss: Tensor
    rng: RngState  # RNG state before the clean forward, to replay its dropout masks
    step: int = 0  # optimizer steps taken so far
    epoch: int = 0
    extras: dict[str, Any] = field(default_factory=dict)
    space: str = "word"  # the perturbation space of `embeds` (mtadv.adversarial.spaces)
    space_scale: Tensor | None = None  # that space's state from the clean forward: (B, T, 1) token RMS
    # inner gradients are taken on loss × grad_scale (the fp16 GradScaler's scale; 1.0 otherwise), then unscaled
    grad_scale: float = 1.0

    @property
    def mask(self) -> Tensor:
        """(B, T, 1) real-token mask in the embeddings' dtype."""
        return token_mask(self.batch, self.embeds)

    @property
    def divergence(self) -> LossFn:
        return DIVERGENCES.get(self.task.adv_loss)

    @property
    def loss_fn(self) -> LossFn:
        return TASK_LOSSES.get(self.task.loss)

    def forward(self, perturbed: Tensor, replay_dropout: bool = True) -> Tensor:
        """The model's output at a perturbed `embeds` (B, T, H), in this step's perturbation space."""
        space = get_space(self.space)
        with self.rng.replay() if replay_dropout else contextlib.nullcontext():
            return space.forward(self.model, self.batch, self.task.name, perturbed, self.space_scale)


class Regularizer:
    """Base class: a term added to the loss, with optional step-structure hooks."""

    name: ClassVar[str] = ""
    # The method's own settings (AdvConfig field -> value) where the built-in defaults (SMART's, paper
    # scale ε = 1e-5) would make it a no-op. They apply to every field the user did not set (CLI,
    # --config, a preset); the task definition's `adv:` still wins. Document each value's source.
    defaults: ClassVar[dict[str, Any]] = {}
    # Settings only this method reads: name -> mtadv.config.setting(default, help, ge/gt/le/lt/choices). Each
    # becomes a flag (--name), a --config key, an `adv:` key and an AdvConfig attribute (self.cfg.name), with
    # its range checked; no edit of mtadv/config.py. Names are unique across all methods and flags: prefix
    # them with the method's name (vat_xi).
    settings: ClassVar[dict[str, Setting]] = {}
    # The settings that weaken the term, named in the end-of-run warning when a task ends at a constant
    # prediction (mtadv.tracking.constant_prediction_warnings): the radius and the weight for most methods.
    strength: ClassVar[tuple[str, ...]] = ("adv_eps", "adv_weight")
    replays: int = 1
    # What the term equals at a zero perturbation (radius, noise and step 0), a trait the registry-wide
    # tests select by: "zero" (a divergence or penalty), "clean_loss" (a loss at x + δ), or None (no
    # perturbation to zero).
    at_zero_perturbation: ClassVar[str | None] = "zero"
    # What the method perturbs, a trait the registry-wide tests select by: "input" (the tensor of the task's
    # perturbation space, `space`), "weights" (θ + v), "dropout" (a second dropout sample), or "weights_in_time"
    # (the EMA teacher θ̃, the student's own past: no lag at creation, θ̃ = θ, one once the student has trained).
    perturbs: ClassVar[str] = "input"
    # True: one instance for the whole run instead of one per task (the EMA teacher is one model). `for_run`
    # builds it from every task's settings and names the tasks that add its term after their own method; a task
    # that names it as its method (`--adv bregman`) trains plainly plus that term.
    shared_by_tasks: ClassVar[bool] = False
    # True: the step trains on this method's loss instead of the clean task loss (adversarial training as
    # PGD/FreeAT/FreeLB/AWP publish it); the clean forward still supplies ctx. The loss must carry a graph.
    replaces_task_loss: bool = False

    def __init__(self, cfg: AdvConfig) -> None:
        self.cfg = cfg

    @classmethod
    def for_run(cls, run: RunConfig, advs: Mapping[str, AdvConfig]) -> dict[str, Regularizer]:
        """A `shared_by_tasks` method's one instance, keyed by every task that adds its term ({}: none does);
        advs: each task's resolved settings."""
        raise NotImplementedError(f"{cls.__name__} is built per task ({cls.__name__}(cfg)), not shared_by_tasks")

    def active(self, step: int, epoch: int) -> bool:
        return step >= self.cfg.adv_warmup_steps and epoch >= self.cfg.adv_start_epoch

    @property
    def space(self) -> str | None:
        """The perturbation space this method works in (`adv_space`); None: it perturbs no input."""
        return self.cfg.adv_space

    def loss(self, ctx: StepContext) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError

    def on_optimizer_step(self, model: nn.Module) -> None:
        pass

    @property
    def teacher(self) -> nn.Module | None:
        """A model of its own that this regularizer keeps (the EMA teacher), to evaluate and save."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def zero_loss(ctx: StepContext) -> Tensor:
    return torch.zeros((), device=ctx.logits.device)
