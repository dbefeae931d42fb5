"""Tokenize raw examples with the encoder's fast tokenizer through a cached `datasets.map`.

The cache file is keyed by the source file's identity (`source_key`: path, size, mtime), the
split's column mapping, the tokenizer and the max length, so a second run skips tokenization.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import datasets
from datasets.fingerprint import Hasher
from transformers import PreTrainedTokenizerBase

from mtadv.taskdef import TaskDef

MODEL_COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "labels", "example_idx", "offset_mapping")


@dataclass
class TokenizedSplit:
    data: datasets.Dataset  # columns: input_ids, attention_mask, [token_type_ids], [labels], example_idx
    raw: datasets.Dataset  # id, text_a, [text_b], [label]: for predictions and submissions
    n_truncated: int  # examples longer than max_seq_len, cut down to it

    def lengths(self) -> list[int]:
        return self.data["length"]


def default_cache_dir() -> str:
    return os.environ.get("MTADV_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mtadv")


def source_key(task: TaskDef, split: str, data_dir: str) -> tuple:
    """Identity of a split's source for the tokenization cache: file path, size and mtime."""
    s = task.splits[split]
    if s.format == "hub":
        return (s.hub, s.subset, s.split, split)
    path = s.path if os.path.isabs(s.path) else os.path.join(data_dir, s.path)
    st = os.stat(path)
    return (os.path.abspath(path), st.st_size, st.st_mtime_ns, s.columns, task.labels, task.type)


def tokenize_split(
    raw: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    max_seq_len: int,
    cache_dir: str,
    source_key: object,
) -> TokenizedSplit:
    """Tokenize (text_a[, text_b]) into model inputs, truncating to max_seq_len."""
    os.makedirs(cache_dir, exist_ok=True)
    key = Hasher.hash((source_key, tokenizer, max_seq_len, raw.column_names, len(raw), "v1"))
    cache_file = os.path.join(cache_dir, f"tok-{key}.arrow")
    data = raw.map(
        _encode_batch,
        fn_kwargs={"tokenizer": tokenizer, "max_len": max_seq_len},
        batched=True,
        with_indices=True,
        remove_columns=raw.column_names,
        cache_file_name=cache_file,
        load_from_cache_file=True,
        desc="tokenizing",
    )
    n_truncated = sum(data["truncated"])
    return TokenizedSplit(data=data, raw=raw, n_truncated=n_truncated)


def _encode_batch(batch: dict, indices: list[int], tokenizer: PreTrainedTokenizerBase, max_len: int) -> dict:
    texts = (batch["text_a"], batch["text_b"]) if "text_b" in batch else (batch["text_a"],)
    enc = tokenizer(*texts, truncation=True, max_length=max_len)
    out = dict(enc)
    out["length"] = [len(ids) for ids in enc["input_ids"]]
    out["truncated"] = _truncated_flags(texts, out["length"], tokenizer, max_len)
    out["example_idx"] = indices
    if "label" in batch:
        out["labels"] = batch["label"]
    return out


def _truncated_flags(texts: tuple, lengths: list[int], tokenizer, max_len: int) -> list[bool]:
    """Which examples were cut: only those at exactly max_len can have been, so re-check just them."""
    full = [i for i, n in enumerate(lengths) if n >= max_len]
    flags = [False] * len(lengths)
    if full:
        sub = [[t[i] for i in full] for t in texts]
        full_len = tokenizer(*sub, truncation=False, verbose=False)["input_ids"]
        for i, ids in zip(full, full_len):
            flags[i] = len(ids) > max_len
    return flags
