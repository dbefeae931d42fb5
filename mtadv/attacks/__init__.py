"""Robustness attacks, one per file, registered in ATTACKS by name and imported automatically.

Two kinds (`Attack.kind`):
- "embedding": perturbs the model's input tensor in a perturbation space (mtadv.adversarial.spaces)
  batch by batch, with the gold label (`pgd`);
- "text": rewrites the raw text before tokenization (`typo`).
`mtadv.attacks.evaluate.evaluate_under_attack` scores a split under either kind.
"""

from __future__ import annotations

import importlib
import pkgutil

from mtadv.attacks.base import ATTACKS, Attack
from mtadv.config import AttackConfig, attack_names

__all__ = ["ATTACKS", "Attack", "AttackConfig", "attack_names", "build_attack"]


def build_attack(name: str, cfg: AttackConfig | None = None) -> Attack:
    """The attack `name` with cfg's settings; an unknown name fails listing the known ones."""
    return ATTACKS.get(name)(cfg or AttackConfig())


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
