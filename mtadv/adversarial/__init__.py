"""Adversarial regularizers: one method per file, registered in ADV_METHODS by name and imported
automatically."""

from __future__ import annotations

import importlib
import logging
import pkgutil

from mtadv.adversarial.base import ADV_METHODS, Regularizer, StepContext
from mtadv.config import AdvConfig, RunConfig, adv_config_for_task, method_settings, setting_owners
from mtadv.errors import ConfigError
from mtadv.taskdef import TaskDef

__all__ = ["ADV_METHODS", "Regularizer", "StepContext", "build_regularizers"]
log = logging.getLogger(__name__)

# Every module of this package is imported, so a method's file registers it (fairseq's criterions do
# the same): adding a method is adding one file.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def build_regularizers(cfg: RunConfig, tasks: dict[str, TaskDef]) -> dict[str, list[Regularizer]]:
    """Each task's regularizers: the CLI's method and settings, overridden by the task's `adv:`, then the
    methods shared by tasks (the EMA teacher) for the tasks that use them."""
    out: dict[str, list[Regularizer]] = {}
    advs: dict[str, AdvConfig] = {}  # each task's resolved settings
    for name, task in tasks.items():
        adv = adv_config_for_task(cfg.adv, task.adv, name, task.source_file, cfg.adv_explicit)
        advs[name] = adv
        out[name] = []
        if adv.adv == "none":
            continue
        try:
            method = ADV_METHODS.get(adv.adv)
        except KeyError as e:
            field = "adv.method" if "method" in task.adv else "--adv"
            raise ConfigError(
                str(e.args[0]), file=task.source_file if "method" in task.adv else None, task=name, field=field
            ) from None
        if not method.shared_by_tasks:  # a shared one is added below, once, to every task that uses it
            out[name].append(method(adv))
    _warn_idle_settings(cfg, tasks, {name: adv.adv for name, adv in advs.items()})
    for method_name in ADV_METHODS.names():
        method = ADV_METHODS.get(method_name)
        if method.shared_by_tasks:
            for name, reg in method.for_run(cfg, advs).items():
                out[name].append(reg)
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
