"""Adversarial regularizers: one method per file, registered in ADV_METHODS by name and imported
automatically."""

from __future__ import annotations

import importlib
import pkgutil

from mtadv.adversarial.base import ADV_METHODS, Regularizer, StepContext
from mtadv.config import RunConfig, adv_config_for_task
from mtadv.errors import ConfigError
from mtadv.taskdef import TaskDef

__all__ = ["ADV_METHODS", "Regularizer", "StepContext", "build_regularizers"]

# Every module of this package is imported, so a method's file registers it (fairseq's criterions do
# the same): adding a method is adding one file.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def build_regularizers(cfg: RunConfig, tasks: dict[str, TaskDef]) -> dict[str, list[Regularizer]]:
    """Each task's regularizers: the CLI's method and settings, overridden by the task's `adv:`."""
    out: dict[str, list[Regularizer]] = {}
    mu: dict[str, float] = {}  # each task's Bregman weight μ (0: no teacher term)
    for name, task in tasks.items():
        adv = adv_config_for_task(cfg.adv, task.adv, name, task.source_file, cfg.adv_explicit)
        regs: list[Regularizer] = []
        if adv.adv != "none":
            try:
                method = ADV_METHODS.get(adv.adv)
            except KeyError as e:
                field = "adv.method" if "method" in task.adv else "--adv"
                raise ConfigError(
                    str(e.args[0]), file=task.source_file if "method" in task.adv else None, task=name, field=field
                ) from None
            regs.append(method(adv))
        out[name] = regs
        mu[name] = adv.bregman_mu
    _add_bregman_teacher(cfg, out, mu)
    return out


def _add_bregman_teacher(cfg: RunConfig, out: dict[str, list[Regularizer]], mu: dict[str, float]) -> None:
    """ONE EMA teacher shared by every task with μ > 0 (the trainer runs its hooks once)."""
    from mtadv.teacher import BregmanTeacher  # here: mtadv.teacher imports this package

    for name, m in mu.items():
        if m < 0:
            raise ConfigError(f"bregman_mu must be >= 0, got {m}", task=name, field="bregman_mu")
    if not 0.0 <= cfg.teacher.bregman_beta < 1.0:
        raise ConfigError(f"must be in [0, 1), got {cfg.teacher.bregman_beta}", field="--bregman_beta")
    users = {name: m for name, m in mu.items() if m > 0}
    if not users:
        return
    teacher = BregmanTeacher(cfg.teacher, users)
    for name in users:
        out[name].append(teacher)
