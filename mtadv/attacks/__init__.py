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

from mtadv.attacks.base import ATTACKS, Attack, AttackConfig

__all__ = ["ATTACKS", "Attack", "AttackConfig", "build_attack"]


def build_attack(cfg: AttackConfig) -> Attack:
    """The attack named by cfg.attack; an unknown name fails listing the known ones."""
    return ATTACKS.get(cfg.attack)(cfg)


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
