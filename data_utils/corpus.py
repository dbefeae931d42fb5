"""Unlabeled text corpora for masked-LM tasks: read passages, hold some out, pack into blocks.

Sources (a task definition split, paths relative to --data_dir):
- `format: txt`: plain text; `passages: line` (default) takes every non-empty line as a passage,
  `passages: paragraph` takes runs of non-empty lines separated by blank lines (joined by spaces);
- `format: jsonl`: one JSON object per line, the passage in `columns: {text: <field>}` (default `text`);
- `hub: <datasets name>` (with `subset`, `split`): the `columns.text` field (default `text`).

Packing follows RoBERTa's FULL-SENTENCES scheme: passages are tokenized without special tokens,
concatenated with the separator token between passages, cut into blocks of --max_seq_len tokens
(special tokens included) and wrapped with the tokenizer's own special tokens ([CLS] ... [SEP]).
The tail of each map batch that does not fill a block is dropped (as transformers' run_mlm.py
does). Tokenizing and packing go through cached `datasets.map` calls, keyed like
data_utils/tokenize.py, so a second run reads the blocks from the cache.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import datasets
from datasets.fingerprint import Hasher
from transformers import PreTrainedTokenizerBase

from mtadv.errors import ConfigError
from mtadv.taskdef import SplitDef, TaskDef

from .readers import ROW_SOURCES, existing_source
from .tokenize import TokenizedSplit

TEXT = "text"
HOLDOUT = "holdout"  # format of a dev split carved out of the train split (see mtadv.taskdef)
HOLDOUT_SEED = 0  # fixed, so every run (any --seed) holds out the same passages
PACK_BATCH = 2000  # passages per packing batch; at most one partial block per batch is dropped


@ROW_SOURCES.register("txt")
def _txt(split: SplitDef, path: str) -> Iterator[tuple[int, Any]]:
    """Passages of a plain-text file: one per line, or blank-line-separated paragraphs."""
    with open(path, encoding="utf-8-sig") as f:
        if split.passages == "line":
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    yield lineno, {TEXT: line.strip()}
            return
        start, lines = 0, []
        for lineno, line in enumerate(f, 1):
            if line.strip():
                start = start or lineno
                lines.append(line.strip())
            elif lines:
                yield start, {TEXT: " ".join(lines)}
                start, lines = 0, []
        if lines:
            yield start, {TEXT: " ".join(lines)}


def read_corpus(task: TaskDef, split_name: str, data_dir: str | None, holdout: float) -> datasets.Dataset:
    """The passages of one split as a Dataset with a `text` column.

    A `holdout` split is `holdout` (a fraction) of the train split's passages, drawn with a fixed
    seed; the train split then excludes them.
    """
    split = task.splits[split_name]
    has_holdout = any(s.format == HOLDOUT for s in task.splits.values())
    source = task.splits["train"] if split.format == HOLDOUT else split
    passages = _read_passages(task, source, data_dir)
    if not (has_holdout and source.is_train):
        return passages
    fld = f"splits.{split_name}"
    if not 0.0 < holdout < 1.0:
        raise ConfigError(
            f"needs held-out text for perplexity: add a dev split or set --mlm_holdout in (0, 1), got {holdout}",
            file=task.source_file,
            task=task.name,
            field=fld,
        )
    if round(holdout * len(passages)) < 1 or len(passages) < 2:
        raise ConfigError(
            f"--mlm_holdout {holdout} of {len(passages)} passage(s) holds out nothing; raise it or add a dev split",
            file=task.source_file,
            task=task.name,
            field=fld,
        )
    parts = passages.train_test_split(test_size=holdout, seed=HOLDOUT_SEED, shuffle=True)
    return parts["test"] if split.format == HOLDOUT else parts["train"]


def _read_passages(task: TaskDef, split: SplitDef, data_dir: str | None) -> datasets.Dataset:
    where = existing_source(task, split, data_dir, "corpus file")
    field = str(split.columns.get(TEXT, TEXT))
    texts = []
    try:
        for lineno, row in ROW_SOURCES.get(split.format)(split, where):
            if field not in row:
                raise ConfigError(
                    f"row has no field {field!r}; set columns: {{text: <field>}}",
                    file=f"{where}:{lineno}",
                    task=task.name,
                    field=f"splits.{split.name}.columns",
                )
            if str(row[field]).strip():
                texts.append(str(row[field]).strip())
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text ({e.reason}); re-encode it as UTF-8", file=where, task=task.name) from None
    if not texts:
        raise ConfigError(
            "corpus is empty: no non-blank passages", file=where, task=task.name, field=f"splits.{split.name}"
        )
    return datasets.Dataset.from_dict({TEXT: texts})


def pack_corpus(
    passages: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    block_size: int,
    cache_dir: str,
    source_key: object,
    with_offsets: bool = False,
) -> TokenizedSplit:
    """Tokenize passages and pack them into blocks of exactly `block_size` tokens.

    Output columns: input_ids, attention_mask, [token_type_ids], length, example_idx, and
    offset_mapping when `with_offsets` (whole-word masking finds word starts from it).
    Raises ValueError when the text does not fill one block (the caller names the task).
    """
    prefix, suffix = special_token_template(tokenizer)
    content = block_size - len(prefix) - len(suffix)
    if content < 1:
        raise ValueError(f"--max_seq_len {block_size} leaves no room for text next to the special tokens")
    os.makedirs(cache_dir, exist_ok=True)
    key = Hasher.hash((source_key, tokenizer, block_size, with_offsets, len(passages), "corpus-v1"))
    tokens = passages.map(
        _tokenize_batch,
        fn_kwargs={"tokenizer": tokenizer, "with_offsets": with_offsets},
        batched=True,
        remove_columns=passages.column_names,
        cache_file_name=os.path.join(cache_dir, f"corpus-tok-{key}.arrow"),
        desc="tokenizing corpus",
    )
    blocks = tokens.map(
        _pack_batch,
        fn_kwargs={
            "prefix": prefix,
            "suffix": suffix,
            "content": content,
            "separator": tokenizer.sep_token_id,
            "token_types": "token_type_ids" in tokenizer.model_input_names,
        },
        batched=True,
        batch_size=PACK_BATCH,
        remove_columns=tokens.column_names,
        cache_file_name=os.path.join(cache_dir, f"corpus-blocks-{key}.arrow"),
        desc="packing blocks",
    )
    if len(blocks) == 0:
        n = sum(len(ids) for ids in tokens["input_ids"])
        raise ValueError(f"the text has {n} tokens, fewer than one block of {block_size} (--max_seq_len)")
    blocks = blocks.map(lambda _, i: {"example_idx": i}, with_indices=True, desc="indexing blocks")
    return TokenizedSplit(data=blocks, raw=passages, n_truncated=0)


def special_token_template(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a single sequence, e.g. ([CLS], [SEP])."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for i in range(len(full) - len(bare) + 1):
        if full[i : i + len(bare)] == bare:
            return full[:i], full[i + len(bare) :]
    raise ValueError("cannot find where this tokenizer puts the text between its special tokens")


def _tokenize_batch(batch: dict, tokenizer: PreTrainedTokenizerBase, with_offsets: bool) -> dict:
    enc = tokenizer(
        batch[TEXT],
        add_special_tokens=False,
        return_attention_mask=False,
        return_token_type_ids=False,
        return_offsets_mapping=with_offsets,
        verbose=False,  # passages may be longer than the model; they are cut into blocks below
    )
    return dict(enc)


def _pack_batch(
    batch: dict, prefix: list[int], suffix: list[int], content: int, separator: int | None, token_types: bool
) -> dict:
    """Concatenate the batch's passages (separator between them) and cut full blocks."""
    ids: list[int] = []
    offsets: list[list[int]] = []
    with_offsets = "offset_mapping" in batch
    for i, passage in enumerate(batch["input_ids"]):
        if ids and separator is not None:
            ids.append(separator)
            offsets.append([0, 0])
        ids.extend(passage)
        if with_offsets:
            offsets.extend([list(o) for o in batch["offset_mapping"][i]])
    n_blocks = len(ids) // content
    out: dict[str, list] = {"input_ids": [], "attention_mask": [], "length": []}
    if token_types:
        out["token_type_ids"] = []
    if with_offsets:
        out["offset_mapping"] = []
    specials = [[0, 0]] * len(prefix), [[0, 0]] * len(suffix)
    for b in range(n_blocks):
        block = prefix + ids[b * content : (b + 1) * content] + suffix  # (T,) with T = block_size
        out["input_ids"].append(block)
        out["attention_mask"].append([1] * len(block))
        out["length"].append(len(block))
        if token_types:
            out["token_type_ids"].append([0] * len(block))
        if with_offsets:
            out["offset_mapping"].append(specials[0] + offsets[b * content : (b + 1) * content] + specials[1])
    return out
