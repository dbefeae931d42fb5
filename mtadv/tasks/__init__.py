"""Task types, one module each: the type, its head, its pipeline and its metrics, registered together.

    labeled.py   classification and regression (rows with text_a/text_b/label; one pipeline)
    mlm.py       masked-LM on an unlabeled corpus (ALUM's pretraining task)

Every module of this package is imported, so a task type's file registers it (as mtadv/adversarial/
does with its methods): adding a task type is adding one file (docs/task_definitions.md, "Adding a task
type"). mtadv.taskdef.TASK_TYPES imports this package on its first lookup, so reading a task definition
sees every type without mtadv.taskdef importing anything above it.
"""

from __future__ import annotations

import importlib
import pkgutil

from mtadv.tasks.base import HEADS, PIPELINES, Collator, EvalRequest, HeadBuilder, TaskPipeline, pipeline_for, register

__all__ = ["HEADS", "PIPELINES", "Collator", "EvalRequest", "HeadBuilder", "TaskPipeline", "pipeline_for", "register"]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
