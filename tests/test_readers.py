"""Readers: each GLUE file quirk, the user formats (CSV, JSONL) and the hub path (mocked, offline)."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
import yaml

from mtadv.data_utils.readers import read_split
from mtadv.errors import ConfigError
from mtadv.taskdef import load_task_defs

FIXTURES = Path(__file__).parent / "fixtures"
USER_TASKS = FIXTURES / "user_tasks"


@pytest.fixture(scope="module")
def glue():
    from conftest import GLUE_YAML

    return load_task_defs(GLUE_YAML)


def test_cola_train_has_no_header_and_test_has_one(glue, glue_sample):
    first_line = (glue_sample / "CoLA" / "train.tsv").read_text(encoding="utf-8").splitlines()[0].split("\t")
    train = read_split(glue["cola"], "train", str(glue_sample))
    assert len(train) == 240  # the first line is data, not a header
    assert train[0]["text_a"] == first_line[3] and train[0]["label"] == glue["cola"].labels.index(first_line[1])
    test = read_split(glue["cola"], "test", str(glue_sample))
    assert len(test) == 40 and "label" not in test.column_names  # header line "index\tsentence" skipped
    assert test[0]["id"] == "0" and test[0]["text_a"] == "Bill whistled past the house."


def test_mrpc_header_with_byte_order_mark(glue, glue_sample):
    raw = (glue_sample / "MRPC" / "train.tsv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfQuality")  # the quirk is really there
    train = read_split(glue["mrpc"], "train", str(glue_sample))
    assert len(train) == 240 and set(train["label"]) == {0, 1}  # "Quality" found despite the BOM
    assert train[0]["text_a"].startswith("Amrozi accused his brother")


def test_quote_characters_are_literal(glue, glue_sample):
    dev = read_split(glue["mrpc"], "dev", str(glue_sample))
    assert len(dev) == 80 and dev[0]["text_b"].startswith('" The foodservice pie business')


def test_unbalanced_quotes_do_not_merge_rows(glue):
    """Real QNLI rows whose sentence starts with an unclosed quote (merged by a quoting reader)."""
    dev = read_split(glue["qnli"], "dev", str(FIXTURES / "glue"))
    assert dev["id"] == ["658", "694", "917"]
    assert all(s.startswith('" ') for s in dev["text_b"])
    assert dev["text_a"][1] == "Who discovered the Compton Effect?"


@pytest.mark.parametrize(
    "task,split",
    [("rte", "test"), ("mrpc", "test"), ("stsb", "test"), ("qqp", "test"), ("mnli", "test_matched"), ("ax", "test")],
)
def test_test_files_have_no_labels(glue, glue_sample, task, split):
    ds = read_split(glue[task], split, str(glue_sample))
    assert "label" not in ds.column_names and len(ds) > 0
    lines = (glue_sample / glue[task].splits[split].path).read_text(encoding="utf-8").splitlines()
    assert ds["id"] == [line.split("\t")[0] for line in lines[1:]]  # ids from the file's index/id column


def test_mnli_dev_splits_read_their_own_label_column(glue, glue_sample):
    matched = read_split(glue["mnli"], "dev_matched", str(glue_sample))
    mismatched = read_split(glue["mnli"], "dev_mismatched", str(glue_sample))
    labels = glue["mnli"].labels
    assert labels[matched[0]["label"]] == "neutral" and labels[mismatched[0]["label"]] == "contradiction"


def test_stsb_scores_in_mixed_formats(glue):
    train = read_split(glue["stsb"], "train", str(FIXTURES / "glue"))
    assert train["label"] == pytest.approx([5.0, 4.4, 4.0, 3.75, 2.11111111111111])
    assert train.features["label"].dtype in ("float32", "float64")
    assert train["id"] == ["0", "1000", "1003", "1094", "2049"]


def test_non_utf8_bytes_are_a_clear_error(tmp_path):
    tasks = _write_tasks(tmp_path, {"path": "train.tsv", "columns": {"text_a": "sentence", "label": "label"}})
    (tmp_path / "train.tsv").write_bytes("sentence\tlabel\nfine\tpos\ncaf\xe9 noir\tneg\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        read_split(tasks["toy"], "train", str(tmp_path))
    msg = str(info.value)
    assert f"{tmp_path / 'train.tsv'}:3" in msg and "task 'toy'" in msg and "splits.train.path" in msg
    assert "UTF-8" in msg and r"\xe9" in msg


def test_jsonl_user_file():
    tasks = load_task_defs(USER_TASKS / "tasks.yml")
    train = read_split(tasks["review_sentiment"], "train", str(USER_TASKS))
    assert len(train) == 6 and train["label"] == [1, 0, 1, 0, 1, 0]
    assert train[2]["text_a"] == 'The cast is "wonderful", the plot less so.'
    assert "🎬" in train[4]["text_a"]
    assert len(read_split(tasks["review_sentiment"], "dev", str(USER_TASKS))) == 2  # blank line skipped
    test = read_split(tasks["review_sentiment"], "test", str(USER_TASKS))
    assert test["id"] == ["r-101", "r-102"] and "label" not in test.column_names


def test_jsonl_invalid_line_names_the_line(tmp_path):
    tasks = _write_tasks(tmp_path, {"path": "train.jsonl", "columns": {"text_a": "text", "label": "y"}})
    (tmp_path / "train.jsonl").write_text('{"text": "ok", "y": "pos"}\n{"text": "broken",\n')
    with pytest.raises(ConfigError) as info:
        read_split(tasks["toy"], "train", str(tmp_path))
    assert f"{tmp_path / 'train.jsonl'}:2" in str(info.value) and "invalid JSON" in str(info.value)


def test_jsonl_missing_key_names_the_column(tmp_path):
    tasks = _write_tasks(tmp_path, {"path": "train.jsonl", "columns": {"text_a": "text", "label": "y"}})
    (tmp_path / "train.jsonl").write_text('{"text": "ok", "y": "pos"}\n{"txt": "typo", "y": "neg"}\n')
    with pytest.raises(ConfigError) as info:
        read_split(tasks["toy"], "train", str(tmp_path))
    assert ":2" in str(info.value) and "'text'" in str(info.value) and "task 'toy'" in str(info.value)


def test_csv_user_file_with_quoting():
    tasks = load_task_defs(USER_TASKS / "tasks.yml")
    train = read_split(tasks["question_pairs"], "train", str(USER_TASKS))
    assert train["id"] == ["p1", "p2", "p3"] and train["label"] == [1, 0, 1]
    assert train[0]["text_a"] == "How do I learn Python, fast?"  # comma inside quotes
    assert train[1]["text_a"] == 'What does "idempotent" mean?'  # doubled quote
    assert train[2]["text_a"] == "A question\nover two lines?"  # newline inside quotes


def test_hub_dataset_is_read_through_datasets(monkeypatch):
    calls = []

    def fake_load_dataset(name, subset=None, split=None, **kw):
        calls.append((name, subset, split))
        return datasets.Dataset.from_dict({"idx": [0, 1, 2], "sentence": ["good", "bad", "fine"], "label": [1, 0, 1]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    tasks = load_task_defs(USER_TASKS / "tasks.yml")
    dev = read_split(tasks["sst2_hub"], "dev", None)
    assert calls == [("nyu-mll/glue", "sst2", "validation")]
    assert dev["text_a"] == ["good", "bad", "fine"] and dev["label"] == [1, 0, 1]


def test_hub_label_out_of_range_is_an_error(monkeypatch):
    fake = datasets.Dataset.from_dict({"sentence": ["a", "b"], "label": [1, 2]})
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: fake)
    tasks = load_task_defs(USER_TASKS / "tasks.yml")
    with pytest.raises(ConfigError) as info:
        read_split(tasks["sst2_hub"], "train", None)
    assert "nyu-mll/glue:2" in str(info.value) and "task 'sst2_hub'" in str(info.value) and "label 2" in str(info.value)


def test_hub_load_failure_is_a_config_error(monkeypatch):
    def offline(*a, **k):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    tasks = load_task_defs(USER_TASKS / "tasks.yml")
    with pytest.raises(ConfigError) as info:
        read_split(tasks["sst2_hub"], "train", None)
    assert "no network" in str(info.value) and "splits.train.hub" in str(info.value)


def test_every_sample_file_keeps_its_row_count(glue, glue_sample):
    """No rows merged or lost anywhere in the sample: rows == lines minus header."""
    for name, task in glue.items():
        for split in task.splits.values():
            lines = (glue_sample / split.path).read_text(encoding="utf-8-sig").splitlines()
            assert len(read_split(task, split.name, str(glue_sample))) == len(lines) - int(split.header), (name, split)


def _write_tasks(tmp_path: Path, train_split: dict) -> dict:
    spec = {"type": "classification", "labels": ["neg", "pos"], "splits": {"train": train_split}}
    (tmp_path / "tasks.yml").write_text(yaml.safe_dump({"tasks": {"toy": spec}}))
    return load_task_defs(tmp_path / "tasks.yml")


@pytest.mark.parametrize("bad", ["", "n/a", "nan", "inf"])
def test_regression_label_must_be_a_finite_number(tmp_path, bad):
    spec = {"type": "regression", "splits": {"train": {"path": "t.tsv", "columns": {"text_a": "s", "label": "y"}}}}
    (tmp_path / "tasks.yml").write_text(yaml.safe_dump({"tasks": {"sim": spec}}))
    (tmp_path / "t.tsv").write_text(f"s\ty\nfine\t2.5\nodd\t{bad}\n")
    with pytest.raises(ConfigError) as info:
        read_split(load_task_defs(tmp_path / "tasks.yml")["sim"], "train", str(tmp_path))
    assert f"{tmp_path / 't.tsv'}:3" in str(info.value) and "splits.train.label" in str(info.value)
    assert "number" in str(info.value)


def test_a_missing_column_names_the_columns_the_file_has(tmp_path):
    (tmp_path / "train.csv").write_text("sentence,polarity\nfine,1\n", encoding="utf-8")
    spec = {"type": "classification", "labels": ["0", "1"]}
    spec["splits"] = {"train": {"path": "train.csv", "columns": {"text_a": "text", "label": "polarity"}}}
    (tmp_path / "t.yml").write_text(yaml.safe_dump({"tasks": {"t": spec}}), encoding="utf-8")
    task = load_task_defs(tmp_path / "t.yml")["t"]
    with pytest.raises(ConfigError, match=r"no column 'text'; its columns are \['sentence', 'polarity'\]"):
        read_split(task, "train", str(tmp_path))
