"""Tokenization: truncation and its count, the on-disk cache, dynamic padding."""

from __future__ import annotations

import os

import datasets
import pytest
import torch
from transformers import AutoTokenizer

import mtadv.data_utils.tokenize as tokenize_module
from mtadv.data_utils.collate import TaskCollator
from mtadv.data_utils.tokenize import source_key, tokenize_split
from mtadv.taskdef import load_task_defs

LONG = " ".join(["the film is long and slow"] * 10)  # ~60 tokens


@pytest.fixture(scope="module")
def tokenizer(tiny_encoder):
    return AutoTokenizer.from_pretrained(tiny_encoder)


def raw_pairs() -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {
            "id": ["0", "1", "2", "3"],
            "text_a": ["a short one .", LONG, "the film", LONG],
            "text_b": ["yes .", "no .", LONG, LONG],
            "label": [0, 1, 0, 1],
        }
    )


def test_truncates_to_max_seq_len_and_counts_truncated(tokenizer, tmp_path):
    raw = raw_pairs()
    out = tokenize_split(raw, tokenizer, 16, str(tmp_path), "k")
    assert max(out.lengths()) == 16 and all(len(ids) <= 16 for ids in list(out.data["input_ids"]))
    full = [len(ids) for ids in tokenizer(list(raw["text_a"]), list(raw["text_b"]))["input_ids"]]
    assert out.n_truncated == sum(n > 16 for n in full) == 3
    assert list(out.data["labels"]) == [0, 1, 0, 1] and list(out.data["example_idx"]) == [0, 1, 2, 3]
    assert out.data["token_type_ids"][0].count(1) > 0  # pairs are encoded as pairs


def test_example_of_exactly_max_len_is_not_counted_as_truncated(tokenizer, tmp_path):
    raw = datasets.Dataset.from_dict({"id": ["0"], "text_a": ["the film is long and slow"]})
    n = len(tokenizer("the film is long and slow")["input_ids"])
    assert tokenize_split(raw, tokenizer, n, str(tmp_path), "k").n_truncated == 0
    assert tokenize_split(raw, tokenizer, n - 1, str(tmp_path), "k").n_truncated == 1


def test_second_tokenization_loads_from_the_cache(tokenizer, tmp_path, monkeypatch):
    calls = []
    real = tokenize_module._encode_batch

    def counting(batch, indices, **kw):
        calls.append(len(indices))
        return real(batch, indices, **kw)

    monkeypatch.setattr(tokenize_module, "_encode_batch", counting)
    first = tokenize_split(raw_pairs(), tokenizer, 32, str(tmp_path), ("file", 1))
    assert calls == [4]
    cache_files = sorted(os.listdir(tmp_path))
    assert len(cache_files) == 1 and cache_files[0].startswith("tok-")

    second = tokenize_split(raw_pairs(), tokenizer, 32, str(tmp_path), ("file", 1))
    assert calls == [4]  # the map function was not called again
    assert sorted(os.listdir(tmp_path)) == cache_files
    assert list(second.data["input_ids"]) == list(first.data["input_ids"]) and second.n_truncated == first.n_truncated
    assert [f["filename"] for f in second.data.cache_files] == [str(tmp_path / cache_files[0])]

    tokenize_split(raw_pairs(), tokenizer, 16, str(tmp_path), ("file", 1))  # other max length: new entry
    tokenize_split(raw_pairs(), tokenizer, 32, str(tmp_path), ("file", 2))  # other source: new entry
    assert calls == [4, 4, 4] and len(os.listdir(tmp_path)) == 3


def test_source_key_changes_when_the_file_changes(tmp_path, glue_sample):
    from conftest import GLUE_YAML

    data = tmp_path / "glue"
    (data / "RTE").mkdir(parents=True)
    src = (glue_sample / "RTE" / "dev.tsv").read_text(encoding="utf-8")
    (data / "RTE" / "dev.tsv").write_text(src, encoding="utf-8")
    rte = load_task_defs(GLUE_YAML)["rte"]
    before = source_key(rte, "dev", str(data))
    assert source_key(rte, "dev", str(data)) == before
    (data / "RTE" / "dev.tsv").write_text(src + src.splitlines()[1] + "\n", encoding="utf-8")
    assert source_key(rte, "dev", str(data)) != before


def test_dynamic_padding_pads_to_the_batch_max(tokenizer, tmp_path):
    out = tokenize_split(raw_pairs(), tokenizer, 128, str(tmp_path), "k")
    rows = out.data.select_columns(["input_ids", "attention_mask", "token_type_ids", "labels", "example_idx"])
    collate = TaskCollator(tokenizer)
    short = collate([rows[0], rows[2]])
    lengths = [out.lengths()[0], out.lengths()[2]]
    assert short["input_ids"].shape == (2, max(lengths)) and max(lengths) < 128
    assert short["attention_mask"].sum(1).tolist() == lengths
    assert short["input_ids"][0, lengths[0] :].eq(tokenizer.pad_token_id).all()
    assert short["labels"].dtype == torch.long and short["example_idx"].tolist() == [0, 2]
    assert "length" not in short and "truncated" not in short
    assert collate([rows[0]])["input_ids"].shape == (1, lengths[0])  # no padding at all


def test_regression_labels_collate_to_float32(tokenizer, tmp_path):
    raw = datasets.Dataset.from_dict({"id": ["0", "1"], "text_a": ["a", "b c"], "label": [3.8, 0.25]})
    out = tokenize_split(raw, tokenizer, 16, str(tmp_path), "k")
    batch = TaskCollator(tokenizer)([out.data[0], out.data[1]])
    assert batch["labels"].dtype == torch.float32 and batch["labels"].shape == (2,)
    assert batch["labels"].tolist() == pytest.approx([3.8, 0.25])


def test_test_split_without_labels_has_no_labels_column(tokenizer, tmp_path):
    raw = datasets.Dataset.from_dict({"id": ["7"], "text_a": ["no gold here"]})
    out = tokenize_split(raw, tokenizer, 16, str(tmp_path), "k")
    assert "labels" not in out.data.column_names
    assert "labels" not in TaskCollator(tokenizer)([out.data[0]])
