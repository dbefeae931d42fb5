"""Adversarial regularizers: one method per file, registered in ADV_METHODS by name and imported
automatically."""

from __future__ import annotations

import importlib
import logging
import pkgutil

from mtadv.adversarial.base import ADV_METHODS, Regularizer, StepContext
from mtadv.config import RunConfig, adv_config_for_task, method_settings, setting_owners
from mtadv.errors import ConfigError
from mtadv.taskdef import TaskDef

__all__ = ["ADV_METHODS", "Regularizer", "StepContext", "build_regularizers"]
log = logging.getLogger(__name__)

# Every module of this package is imported, so a method's file registers it (fairseq's criterions do
# the same): adding a method is adding one file.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def build_regularizers(cfg: RunConfig, tasks: dict[str, TaskDef]) -> dict[str, list[Regularizer]]:
    """Each task's regularizers: the CLI's method and settings, overridden by the task's `adv:`."""
    out: dict[str, list[Regularizer]] = {}
    mu: dict[str, float] = {}  # each task's Bregman weight μ (0: no teacher term)
    methods: dict[str, str] = {}  # each task's method
    for name, task in tasks.items():
        adv = adv_config_for_task(cfg.adv, task.adv, name, task.source_file, cfg.adv_explicit)
        methods[name] = adv.adv
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
    _warn_idle_settings(cfg, tasks, methods)
    _add_bregman_teacher(cfg, out, mu)
    return out


def _warn_idle_settings(cfg: RunConfig, tasks: dict[str, TaskDef], methods: dict[str, str]) -> None:
    """Warn about a method's own setting that was set (flag, --config, the Python API, a task's `adv:`) only
    for tasks that run other methods: it changes nothing, and is most likely a leftover or a wrong --adv.

    A warning, not an error: a sweep may pass the same flags to every method, and one CLI setting may
    serve the tasks on its method while the others ignore it (the usual per-task mix)."""
    for name in method_settings():
        users = {t: m for t, m in methods.items() if name in cfg.adv_explicit or name in tasks[t].adv}
        owners = setting_owners(name)
        if users and not any(m in owners for m in users.values()):
            runs = ", ".join(f"{t}: {m}" for t, m in users.items())
            log.warning(
                "%s is a setting of --adv %s, which no task it is set for runs (%s): it has no effect",
                name,
                " / ".join(owners),
                runs,
            )


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
