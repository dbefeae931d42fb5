"""The labeled task types, classification and regression: one pipeline, a head and a label parser each.

Rows have text_a, [text_b] and a label (data_utils/readers.py), one example per row, padded
dynamically (data_utils/collate.py). Heads pool the first token:
    classification: (B, T, H) -> (B, C) logits; outputs (N, C) class probabilities; loss ce
    regression:     (B, T, H) -> (B,) scores;   outputs (N,) scores;              loss mse
Any metric of data_utils/metrics.py (accuracy, f1, mcc, pearson, spearman) scores the predictions.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import datasets
import torch
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from mtadv import distributed
from mtadv.data_utils.collate import TaskCollator
from mtadv.data_utils.metrics import METRICS
from mtadv.data_utils.readers import read_split
from mtadv.data_utils.tokenize import TokenizedSplit, source_key, tokenize_split
from mtadv.evaluate import Predictions, predict_split, split_metrics
from mtadv.taskdef import TaskDef, TaskType
from mtadv.tasks.base import EvalRequest, TaskPipeline, register

if TYPE_CHECKING:  # annotations only (mtadv.config sits above this layer)
    from mtadv.config import RunConfig


# ---------------------------------------------------------------- labels
def class_label(task: TaskDef, raw: Any) -> int:
    """A label name from the task's `labels` -> its index (hub datasets store the index itself)."""
    assert task.labels is not None
    name = str(raw).strip()
    if name in task.labels:
        return task.labels.index(name)
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw < len(task.labels):
        return raw  # hub datasets store class indices
    raise ValueError(f"label {raw!r} is not in the label list {list(task.labels)}; fix the data or 'labels'")


def score_label(task: TaskDef, raw: Any) -> float:
    """Any spelling of a finite number -> a float."""
    try:
        score = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"label {raw!r} is not a number, as a {task.type} task needs") from None
    if not math.isfinite(score):  # "nan"/"inf" parse as floats but would poison the loss
        raise ValueError(f"label {raw!r} is not a finite number, as a {task.type} task needs")
    return score


# ---------------------------------------------------------------- heads
class PooledHead(nn.Module):
    """First-token pooling -> dropout -> dense -> tanh -> dropout -> projection (as RoBERTa's head).

    Built on the first token's hidden state rather than the encoder's pooler, because many
    encoders (RoBERTa, DeBERTa, ELECTRA) ship without a trained pooler.
    """

    def __init__(self, hidden_size: int, num_outputs: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden_size, num_outputs)
        self.num_outputs = num_outputs

    def forward(self, hidden: Tensor, batch: dict[str, Tensor]) -> Tensor:
        x = self.dropout(hidden[:, 0])  # (B, H)
        x = self.dropout(torch.tanh(self.dense(x)))
        return self.out_proj(x)  # (B, C)


class ScoreHead(PooledHead):
    def forward(self, hidden: Tensor, batch: dict[str, Tensor]) -> Tensor:
        return super().forward(hidden, batch).squeeze(-1)  # (B,)


def classification_head(hidden_size: int, num_outputs: int, dropout: float = 0.1, **_) -> nn.Module:
    return PooledHead(hidden_size, num_outputs, dropout)


def regression_head(hidden_size: int, num_outputs: int = 1, dropout: float = 0.1, **_) -> nn.Module:
    return ScoreHead(hidden_size, 1, dropout)


# ---------------------------------------------------------------- pipeline
def read(task: TaskDef, split: str, data_dir: str, cfg: RunConfig) -> datasets.Dataset:
    return read_split(task, split, data_dir)


def tokenize(
    raw: datasets.Dataset, task: TaskDef, split: str, tokenizer: PreTrainedTokenizerBase, cfg: RunConfig, cache_dir: str
) -> TokenizedSplit:
    key = (source_key(task, split, cfg.train.data_dir), len(raw))
    return tokenize_split(raw, tokenizer, cfg.train.max_seq_len, cache_dir, key)


def collator(task: TaskDef, tokenizer: PreTrainedTokenizerBase, cfg: RunConfig) -> TaskCollator:
    return TaskCollator(tokenizer)


def predict(model: nn.Module, task: TaskDef, split: TokenizedSplit, req: EvalRequest, forward=None) -> Predictions:
    """Class probabilities (N, C) or scores (N,) for every row, each rank predicting its shard.

    forward: batch -> the task's outputs, in place of the model's own (an attack's perturbed forward)."""
    preds = predict_split(
        model,
        task,
        distributed.shard_split(split, req.rank, req.world_size),  # this rank's rows
        TaskCollator(req.tokenizer),
        req.batch_size,
        req.device,
        show_progress=req.show_progress,
        autocast_dtype=req.autocast_dtype,
        forward=forward,
    )
    return distributed.gather_predictions(preds)  # all rows, in order, on every rank


def evaluate(model: nn.Module, task: TaskDef, split: TokenizedSplit, req: EvalRequest) -> dict[str, float]:
    return split_metrics(task, predict(model, task, split, req))


LABELED = TaskPipeline(read=read, tokenize=tokenize, collator=collator, evaluate=evaluate, predict=predict)

register(
    TaskType("classification", "classification", "class", "ce", "sym_kl", ("accuracy",), METRICS.names, class_label),
    LABELED,
    classification_head,
)
register(
    TaskType("regression", "regression", "score", "mse", "mse", ("pearson", "spearman"), METRICS.names, score_label),
    LABELED,
    regression_head,
)
