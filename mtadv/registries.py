"""The registries of the two plug-in folders that the run configuration reads: the adversarial methods
(mtadv/adversarial/) and the robustness attacks (mtadv/attacks/).

mtadv.config takes the method names, their defaults and their own settings (`Regularizer.settings`) from
ADV_METHODS, and the attack names from ATTACKS; the methods and attacks import mtadv.config for their
settings' types. So the registries sit here, below both: each discovers its package on the first lookup
(mtadv.registry.Registry's `discover`), and mtadv.config never imports the packages that import it.
`mtadv.adversarial.ADV_METHODS` and `mtadv.attacks.ATTACKS` are these same objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mtadv.registry import Registry

if TYPE_CHECKING:
    from mtadv.adversarial.base import Regularizer
    from mtadv.attacks.base import Attack

__all__ = ["ADV_METHODS", "ATTACKS"]

ADV_METHODS: Registry[type[Regularizer]] = Registry("adversarial method", discover="mtadv.adversarial")
ATTACKS: Registry[type[Attack]] = Registry("attack", discover="mtadv.attacks")
