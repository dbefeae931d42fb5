"""Adversarial regularizers: one method per file, registered in ADV_METHODS by name."""

from __future__ import annotations

from mtadv.adversarial import smart  # noqa: F401  (registers "smart")
from mtadv.adversarial.base import ADV_METHODS, Regularizer, StepContext
from mtadv.config import RunConfig, adv_config_for_task
from mtadv.errors import ConfigError
from mtadv.taskdef import TaskDef

__all__ = ["ADV_METHODS", "Regularizer", "StepContext", "build_regularizers"]


def build_regularizers(cfg: RunConfig, tasks: dict[str, TaskDef]) -> dict[str, list[Regularizer]]:
    """Each task's regularizers: the CLI's method and settings, overridden by the task's `adv:`."""
    out: dict[str, list[Regularizer]] = {}
    for name, task in tasks.items():
        adv = adv_config_for_task(cfg.adv, task.adv, name, task.source_file)
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
    return out
