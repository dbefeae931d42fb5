"""An epoch plan as a torch Dataset: DataLoader workers collate the planned batches."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor
from torch.utils.data import Dataset

from .sampler import TaskBatch
from .tokenize import MODEL_COLUMNS, TokenizedSplit

Collate = Callable[[list[dict]], dict[str, Tensor]]  # a task's collator: rows -> padded batch


class PlanDataset(Dataset):
    """Item i = (task, collated batch i of the epoch plan); lets DataLoader workers collate."""

    def __init__(self, plan: list[TaskBatch], rows: dict[str, list[dict]], collators: dict[str, Collate]) -> None:
        self.plan, self.rows, self.collators = plan, rows, collators  # one collator per task (by task type)

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, i: int) -> tuple[str, dict[str, Tensor]]:
        tb = self.plan[i]
        return tb.task, self.collators[tb.task]([self.rows[tb.task][j] for j in tb.indices])


def model_rows(split: TokenizedSplit) -> list[dict]:
    """The tokenized split as a list of plain dicts (fast random access for collation)."""
    cols = [c for c in MODEL_COLUMNS if c in split.data.column_names]
    data = split.data.select_columns(cols).to_dict()
    return [dict(zip(cols, vals)) for vals in zip(*(data[c] for c in cols))]
