"""Dynamic padding: each batch is padded to its own longest example."""

from __future__ import annotations

from typing import Any

import torch
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from .tokenize import MODEL_COLUMNS


class TaskCollator:
    """Pads a list of tokenized examples into a dict of tensors (B, T) plus labels (B,)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, pad_to_multiple_of: int | None = None) -> None:
        self.pad = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        features = [{k: v for k, v in ex.items() if k in MODEL_COLUMNS} for ex in examples]
        batch = self.pad(features)
        if "labels" in batch and batch["labels"].is_floating_point():
            batch["labels"] = batch["labels"].float()  # regression scores: (B,) float32
        return dict(batch)
