"""What a task type provides, and the registries its module fills.

A task type is one module of mtadv/tasks/. Under the type's name it registers (`register` does all
three at once):
- its TaskType (mtadv.taskdef.TASK_TYPES): label kind and label parser, default loss, divergence and
  metrics, the metric names its evaluator computes, which of them are lower-is-better;
- its head builder (HEADS, under TaskType.head), `f(hidden_size, num_outputs, dropout, encoder, **_)
  -> nn.Module`, whose module maps (hidden (B, T, H), batch) to the task's output;
- its TaskPipeline (PIPELINES): read -> tokenize -> collate -> evaluate -> predict.
The trainer, the run builder and predict.py look these up by a task's type and never branch on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import datasets
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from mtadv.data_utils.tokenize import TokenizedSplit
from mtadv.evaluate import Predictions
from mtadv.registry import Registry
from mtadv.taskdef import TASK_TYPES, TaskDef, TaskType

if TYPE_CHECKING:  # annotations only: the run's settings are passed through, and mtadv.config sits above
    from mtadv.config import RunConfig

Collator = Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]
HeadBuilder = Callable[..., nn.Module]
HEADS: Registry[HeadBuilder] = Registry("head")


@dataclass(frozen=True)
class EvalRequest:
    """Everything an evaluator (or a predictor) needs besides the model, task and split."""

    tokenizer: PreTrainedTokenizerBase
    batch_size: int
    device: torch.device
    autocast_dtype: torch.dtype | None = None
    rank: int = 0  # under DDP each rank evaluates its shard; every rank returns the same metrics
    world_size: int = 1
    progress: bool = True  # progress bars (on rank 0 only)

    @property
    def show_progress(self) -> bool:
        return self.progress and self.rank == 0


@dataclass(frozen=True)
class TaskPipeline:
    # (task, split name, data dir, run config) -> raw examples
    read: Callable[[TaskDef, str, str, RunConfig], datasets.Dataset]
    # (raw, task, split name, tokenizer, run config, cache dir) -> model-ready split
    tokenize: Callable[[datasets.Dataset, TaskDef, str, PreTrainedTokenizerBase, RunConfig, str], TokenizedSplit]
    # (task, tokenizer, run config) -> training-batch collator
    collator: Callable[[TaskDef, PreTrainedTokenizerBase, RunConfig], Collator]
    # (model, task, split, request) -> {metric: value}, the same on every rank
    evaluate: Callable[[nn.Module, TaskDef, TokenizedSplit, EvalRequest], dict[str, float]]
    # (model, task, split, request) -> the model's outputs for the split, in row order, on every rank
    predict: Callable[[nn.Module, TaskDef, TokenizedSplit, EvalRequest], Predictions]


PIPELINES: Registry[TaskPipeline] = Registry("task pipeline")


def pipeline_for(task: TaskDef) -> TaskPipeline:
    return PIPELINES.get(task.type)


def register(ttype: TaskType, pipeline: TaskPipeline, head: HeadBuilder | None = None) -> TaskType:
    """Register a task type with its pipeline and, unless it uses a head registered already, its head."""
    TASK_TYPES.register(ttype.name)(ttype)
    PIPELINES.register(ttype.name)(pipeline)
    if head is not None:
        HEADS.register(ttype.head)(head)
    return ttype
