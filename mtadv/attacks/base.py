"""The attack interface and its settings.

An attack never changes the model's weights, runs the model in eval mode, and is deterministic for
a seed. Its strength is a radius (`attack_eps`, embedding attacks) or a rate (`attack_rate`, text
attacks); a strength of 0 gives exactly the clean predictions.
"""

from __future__ import annotations

import dataclasses
import random
from typing import ClassVar

from torch import Tensor, nn

from mtadv.config import AttackConfig
from mtadv.registries import ATTACKS as ATTACKS  # lives below mtadv.config
from mtadv.taskdef import TaskDef


def step_size(cfg: AttackConfig) -> float:
    """pgd's ascent step: --attack_lr, or 2.5·ε/K (Madry et al.'s rule) when it is 0."""
    return cfg.attack_lr or 2.5 * cfg.attack_eps / max(1, cfg.attack_steps)


class Attack:
    """Base class. Embedding attacks implement `perturbed_outputs`; text attacks `perturb_text`."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""  # "embedding" or "text"
    settings_used: ClassVar[tuple[str, ...]] = ()  # the AttackConfig fields it reads; () means all

    def settings(self) -> dict:
        """The attack's name and the settings it reads, as written beside its metrics (metrics.json)."""
        used = self.settings_used or tuple(f.name for f in dataclasses.fields(self.cfg))
        return {"name": self.name, **{f: getattr(self.cfg, f) for f in used}}

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
