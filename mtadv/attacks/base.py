"""The attack interface and its settings.

An attack never changes the model's weights, runs the model in eval mode, and is deterministic for
a seed. Its strength is a radius (`attack_eps`, embedding attacks) or a rate (`attack_rate`, text
attacks); a strength of 0 gives exactly the clean predictions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from mtadv.registry import Registry
from mtadv.taskdef import TaskDef


@dataclass(frozen=True)
class AttackConfig:
    """One attack and its strength (flags --attack_* on predict.py; --eval_attack on train.py)."""

    attack: str = "pgd"
    attack_eps: float = 0.1  # radius, in the units of attack_space (embedding: relative to each token's RMS)
    attack_steps: int = 5
    attack_lr: float = 0.0  # ascent step size; 0: 2.5·ε/steps (Madry et al.'s rule)
    attack_norm: str = "l2"
    attack_norm_level: str = "token"
    attack_space: str = "embedding"
    attack_rate: float = 0.1  # text attacks: fraction of words changed
    attack_seed: int = 0

    @property
    def step_size(self) -> float:
        return self.attack_lr or 2.5 * self.attack_eps / max(1, self.attack_steps)


class Attack:
    """Base class. Embedding attacks implement `perturbed_outputs`; text attacks `perturb_text`."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""  # "embedding" or "text"

    def __init__(self, cfg: AttackConfig) -> None:
        self.cfg = cfg

    @property
    def strength(self) -> float:
        """The number whose 0 means no attack: the radius or the rate."""
        return self.cfg.attack_eps if self.kind == "embedding" else self.cfg.attack_rate

    def perturbed_outputs(self, model: nn.Module, batch: dict[str, Tensor], task: TaskDef) -> Tensor:
        """(B, C) logits or (B,) scores under attack, in eval mode; the weights get no gradient."""
        raise NotImplementedError

    def perturb_text(self, text: str, rng: random.Random) -> str:
        """The text with this attack's noise, drawn from rng."""
        raise NotImplementedError


ATTACKS: Registry[type[Attack]] = Registry("attack")
