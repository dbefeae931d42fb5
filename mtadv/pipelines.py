"""Compatibility: a task type's pipeline lives in its module of mtadv.tasks (labeled.py, mlm.py); the
PIPELINES registry, TaskPipeline and EvalRequest in mtadv.tasks.base."""

from mtadv.tasks.base import PIPELINES, Collator, EvalRequest, TaskPipeline, pipeline_for
from mtadv.tasks.labeled import LABELED

__all__ = ["LABELED", "PIPELINES", "Collator", "EvalRequest", "TaskPipeline", "pipeline_for"]
