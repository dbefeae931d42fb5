"""Batched inference and dev-set metrics for one task split."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mtadv.data_utils.collate import TaskCollator
from mtadv.data_utils.metrics import compute_metrics
from mtadv.data_utils.tokenize import TokenizedSplit
from mtadv.taskdef import TaskDef


@dataclass
class Predictions:
    example_idx: np.ndarray  # (N,) row index into the split's raw examples
    outputs: np.ndarray  # (N, C) class probabilities, or (N,) scores (mlm: (N,) token ids)
    labels: np.ndarray | None  # (N,) gold labels when the split has them

    def predicted(self, task: TaskDef) -> np.ndarray:
        """Class indices for classification, scores otherwise."""
        return self.outputs.argmax(-1) if self.outputs.ndim == 2 else self.outputs


@torch.no_grad()
def predict_split(
    model: nn.Module,
    task: TaskDef,
    split: TokenizedSplit,
    collator: TaskCollator,
    batch_size: int,
    device: torch.device,
    show_progress: bool = True,
    autocast_dtype: torch.dtype | None = None,
    forward: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None,
) -> Predictions:
    """Run the model over a split in order (dynamic padding, batches sorted by nothing).

    `forward(batch)` replaces `model(batch, task=...)` (an attack's perturbed outputs)."""
    was_training = model.training
    model.eval()
    loader = DataLoader(split.data, batch_size=batch_size, shuffle=False, collate_fn=collator)
    idx, outs, labels = [], [], []
    for batch in tqdm(loader, desc=f"predict {task.name}", leave=False, disable=not show_progress):
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            out = (forward(batch) if forward else model(batch, task=task.name)).float()
        outs.append((out.softmax(-1) if out.ndim == 2 else out).cpu().numpy())
        idx.append(batch["example_idx"].cpu().numpy())
        if "labels" in batch:
            labels.append(batch["labels"].cpu().numpy())
    model.train(was_training)
    return Predictions(np.concatenate(idx), np.concatenate(outs), np.concatenate(labels) if labels else None)


# Classification only, reported with the task's metrics: the percentage of rows predicted as the most
# predicted class. 100 is a constant prediction (a collapsed run: the model ignores its input, and an
# attack cannot flip it either), whatever the accuracy says.
TOP_CLASS_SHARE = "top_class_share"


def split_metrics(task: TaskDef, preds: Predictions) -> dict[str, float]:
    """The task's metrics of the predictions, and for classification `top_class_share`."""
    assert preds.labels is not None, "metrics need a labeled split"
    predicted = preds.predicted(task)  # (N,) class indices or scores
    metrics = compute_metrics(task.metrics, predicted, preds.labels)
    if preds.outputs.ndim == 2 and len(predicted):  # classification: (N, C) class probabilities
        metrics[TOP_CLASS_SHARE] = top_class_share(predicted)
    return metrics


def top_class_share(predicted: np.ndarray) -> float:
    """(N,) class indices -> 100 x the largest share of rows any one class got."""
    return 100.0 * float(np.bincount(predicted).max()) / len(predicted)
