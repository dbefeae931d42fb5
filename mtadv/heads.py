"""Task heads, registered by name; a task type names its head (mtadv.taskdef.TASK_TYPES).

Every head maps the encoder's last hidden states (B, T, H) and the batch to the task's output:
(B, C) logits for classification, (B,) scores for regression.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from mtadv.registry import Registry

HeadBuilder = Callable[..., nn.Module]
HEADS: Registry[HeadBuilder] = Registry("head")


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


@HEADS.register("classification")
def classification_head(hidden_size: int, num_outputs: int, dropout: float = 0.1, **_) -> nn.Module:
    return PooledHead(hidden_size, num_outputs, dropout)


class ScoreHead(PooledHead):
    def forward(self, hidden: Tensor, batch: dict[str, Tensor]) -> Tensor:
        return super().forward(hidden, batch).squeeze(-1)  # (B,)


@HEADS.register("regression")
def regression_head(hidden_size: int, num_outputs: int = 1, dropout: float = 0.1, **_) -> nn.Module:
    return ScoreHead(hidden_size, 1, dropout)


class MaskedLMHead(nn.Module):
    """A transformers *ForMaskedLM head on the shared encoder: (B, T, H) -> (N, V) logits.

    The head modules are the *ForMaskedLM model's children other than its base model (BERT:
    `cls`; RoBERTa: `lm_head`; DistilBERT: vocab_transform ... vocab_projector), applied in
    order. With `mlm_labels` (B, T) in the batch, only the N masked positions (label != -100)
    are scored, so the task loss and ALUM's divergence compare (N, V) logits; without, all
    positions are: (B, T, V). `hf_model` is the *ForMaskedLM wrapper sharing the encoder and
    these modules (not a submodule, so nothing is registered twice); checkpoints save it so
    `AutoModelForMaskedLM` loads them.
    """

    def __init__(self, hf_model: nn.Module, parts: dict[str, nn.Module], vocab_size: int) -> None:
        super().__init__()
        for name, module in parts.items():
            self.add_module(name, module)
        self.order = list(parts)
        self.num_outputs = vocab_size
        object.__setattr__(self, "hf_model", hf_model)  # plain attribute: see the docstring

    def forward(self, hidden: Tensor, batch: dict[str, Tensor]) -> Tensor:
        labels = batch.get("mlm_labels")
        x = hidden if labels is None else hidden[labels != -100]  # (N, H) at masked positions
        for name in self.order:
            x = getattr(self, name)(x)
        return x  # (N, V) or (B, T, V)


@HEADS.register("mlm")
def masked_lm_head(encoder: nn.Module, **_) -> nn.Module:
    from mtadv.mlm_head import build_masked_lm_head  # transformers' Auto classes, loaded on demand

    return build_masked_lm_head(encoder)
