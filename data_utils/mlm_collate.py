"""Masked-LM batches: transformers' DataCollatorForLanguageModeling does the masking.

BERT's recipe: 15% of the (non-special) tokens are chosen; of those 80% become [MASK], 10% a
random token, 10% stay (--mlm_probability; --mlm_whole_word chooses whole words, and then
transformers replaces every chosen token by [MASK]). Batches carry
    input_ids, attention_mask, [token_type_ids]   (B, T) model inputs, masked
    mlm_labels                                    (B, T) original ids at chosen positions, -100 elsewhere
    labels                                        (N,)   mlm_labels at the N chosen positions, row-major
so the head scores only the N chosen positions and the task loss is plain cross-entropy.

Masking is seeded per batch from (seed, the batch's block indices): the same blocks in the same
batch get the same masks in every run, in DataLoader workers, and after a resume.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerBase

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def with_flat_labels(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add labels (N,) = the chosen positions' ids, next to mlm_labels (B, T)."""
    batch["labels"] = batch["mlm_labels"][batch["mlm_labels"] != -100]
    return batch


class MLMCollator:
    """Stacks packed blocks and masks them (dynamic masking: new masks every epoch's batches)."""

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, probability: float = 0.15, whole_word: bool = False, seed: int = 0
    ) -> None:
        self.masker = DataCollatorForLanguageModeling(
            tokenizer, mlm_probability=probability, whole_word_mask=whole_word, seed=seed
        )
        self.seed, self.whole_word = seed, whole_word

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        keys = [*MODEL_INPUTS, "offset_mapping"] if self.whole_word else MODEL_INPUTS
        features = [{k: ex[k] for k in keys if k in ex} for ex in examples]
        blocks = tuple(int(ex.get("example_idx", i)) for i, ex in enumerate(examples))
        # The generator is transformers' own hook for seeded masking; reseeding it per batch makes
        # the masks a function of the batch's contents rather than of how many batches came before.
        self.masker.generator = torch.Generator().manual_seed(hash((self.seed, blocks)) % 2**63)
        batch = dict(self.masker(features))
        batch["mlm_labels"] = batch.pop("labels")
        return with_flat_labels(batch)


class MaskedBlockCollator:
    """Stacks blocks that were masked once already (the held-out split; see mtadv.tasks.mlm)."""

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        keys = [k for k in (*MODEL_INPUTS, "mlm_labels") if k in examples[0]]
        batch = {k: torch.tensor([ex[k] for ex in examples], dtype=torch.long) for k in keys}
        return with_flat_labels(batch)
