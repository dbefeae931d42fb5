"""The transformers-`Trainer` side of the benchmarks, built the way the transformers examples do it.

`run_glue.py` style: AutoModelForSequenceClassification (BERT: pretrained pooler + linear layer),
tokenize with `datasets.map` (truncation, no padding), DataCollatorWithPadding (dynamic padding),
`Trainer`. The raw rows come from mtadv's own readers so both sides see exactly the same examples.
Needs `accelerate` (the transformers Trainer requires it): `pip install -e ".[bench]"`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import datasets
import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
)

from mtadv.data_utils.metrics import compute_metrics


@dataclass
class CountingCollator(DataCollatorWithPadding):
    """DataCollatorWithPadding that also counts real and padded tokens of every batch it builds."""

    batches: list[tuple[int, int, int]] = field(default_factory=list)  # (examples, real, total tokens) per batch

    def __call__(self, features):
        batch = super().__call__(features)
        mask = batch["attention_mask"]  # (B, T)
        self.batches.append((mask.shape[0], int(mask.sum()), mask.numel()))
        return batch


def hf_tokenize(raw: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, max_len: int) -> datasets.Dataset:
    """run_glue.py's preprocessing: tokenizer(sentence1, sentence2, truncation) and a `labels` column."""

    def encode(batch: dict) -> dict:
        texts = (batch["text_a"], batch["text_b"]) if "text_b" in batch else (batch["text_a"],)
        out = dict(tokenizer(*texts, truncation=True, max_length=max_len))
        out["labels"] = batch["label"]
        return out

    return raw.map(encode, batched=True, remove_columns=raw.column_names, desc="hf tokenizing")


def hf_args(output_dir: str, **kw) -> TrainingArguments:
    """CPU fp32 TrainingArguments with nothing running besides training unless asked."""
    defaults = dict(
        output_dir=output_dir,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_steps=10,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    return TrainingArguments(**{**defaults, **kw})


def metrics_fn(names: tuple[str, ...]):
    """compute_metrics for Trainer, with the very same metric functions mtadv's evaluation uses."""

    def compute(eval_pred) -> dict[str, float]:
        logits, labels = eval_pred
        return compute_metrics(names, np.asarray(logits).argmax(-1), np.asarray(labels))

    return compute


def hf_trainer(
    model_path: str,
    num_labels: int,
    tokenizer: PreTrainedTokenizerBase,
    train: datasets.Dataset,
    args: TrainingArguments,
    eval_data: datasets.Dataset | None = None,
    metric_names: tuple[str, ...] = ("accuracy",),
    callbacks: list | None = None,
) -> tuple[Trainer, CountingCollator]:
    torch.manual_seed(args.seed)  # the classifier's fresh weights, as Trainer(model_init=...) would seed them
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=num_labels)
    collator = CountingCollator(tokenizer)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=eval_data,
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=metrics_fn(metric_names),
        callbacks=callbacks,
    )
    return trainer, collator
