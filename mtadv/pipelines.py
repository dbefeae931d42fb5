"""What a task type does with data, registered by task type: read, tokenize, collate, evaluate.

The trainer and the run builder look a task's pipeline up by its type and never branch on the
type themselves. Labeled types (classification, regression) read rows with text_a/text_b/label,
tokenize one example per row, pad dynamically and score predictions with METRICS; the masked-LM
type (mtadv.mlm) reads a corpus, packs blocks, masks them and reports loss and perplexity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import datasets
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from mtadv.config import RunConfig
from mtadv.data_utils.collate import TaskCollator
from mtadv.data_utils.readers import read_split
from mtadv.data_utils.tokenize import TokenizedSplit, tokenize_split
from mtadv.evaluate import predict_split, split_metrics
from mtadv.registry import Registry
from mtadv.taskdef import TaskDef

Collator = Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class EvalRequest:
    """Everything an evaluator needs besides the model, task and split."""

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
    # (model, task, split, request) -> {metric: value}
    evaluate: Callable[[nn.Module, TaskDef, TokenizedSplit, EvalRequest], dict[str, float]]


PIPELINES: Registry[TaskPipeline] = Registry("task pipeline")


def pipeline_for(task: TaskDef) -> TaskPipeline:
    return PIPELINES.get(task.type)


def _read_labeled(task: TaskDef, split: str, data_dir: str, cfg: RunConfig) -> datasets.Dataset:
    return read_split(task, split, data_dir)


def _tokenize_labeled(
    raw: datasets.Dataset, task: TaskDef, split: str, tokenizer, cfg: RunConfig, cache_dir: str
) -> TokenizedSplit:
    from mtadv.build import source_key  # mtadv.build imports this module

    key = (source_key(task, split, cfg.train.data_dir), len(raw))
    return tokenize_split(raw, tokenizer, cfg.train.max_seq_len, cache_dir, key)


def _evaluate_labeled(model: nn.Module, task: TaskDef, split: TokenizedSplit, req: EvalRequest) -> dict[str, float]:
    from mtadv import distributed  # imports mtadv.evaluate

    preds = predict_split(
        model,
        task,
        distributed.shard_split(split, req.rank, req.world_size),  # this rank's rows
        TaskCollator(req.tokenizer),
        req.batch_size,
        req.device,
        show_progress=req.show_progress,
        autocast_dtype=req.autocast_dtype,
    )
    preds = distributed.gather_predictions(preds)  # all rows, in order, on every rank
    return split_metrics(task, preds)


LABELED = TaskPipeline(
    read=_read_labeled,
    tokenize=_tokenize_labeled,
    collator=lambda task, tokenizer, cfg: TaskCollator(tokenizer),
    evaluate=_evaluate_labeled,
)
PIPELINES.register("classification")(LABELED)
PIPELINES.register("regression")(LABELED)

from mtadv import mlm  # noqa: E402, F401  (registers the "mlm" pipeline; it imports this module)
