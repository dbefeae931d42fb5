"""Every registered task type, head and pipeline, run on a tiny random encoder (as timm runs every
registered model): a new one is tested the moment its module in mtadv/tasks/ registers it.

Data for a type comes from its declared traits (label kind, held-out dev split), never from its name:
rows of sentence pairs with class labels or scores, or a text corpus for an unlabeled type.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PAIR_LABELS, SENTENCE_PAIRS

import mtadv.heads
import mtadv.pipelines
from mtadv.checkpoint import load_encoder
from mtadv.config import MLMConfig, RunConfig, TrainConfig
from mtadv.data_utils.readers import read_split
from mtadv.errors import ConfigError
from mtadv.evaluate import TOP_CLASS_SHARE, Predictions
from mtadv.losses import TASK_LOSSES
from mtadv.model import MultiTaskModel
from mtadv.taskdef import TASK_TYPES, TaskDef, TaskType, load_task_defs
from mtadv.tasks import HEADS, PIPELINES, EvalRequest, pipeline_for

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "data" / "mlm_sample" / "train.txt"
SEQ = 32
CLASS_NAMES = ["no", "yes"]


def _types_using(head: str) -> list[TaskType]:
    return [TASK_TYPES.get(n) for n in TASK_TYPES.names() if TASK_TYPES.get(n).head == head]


def _labeled_split(path: Path, kind: str) -> str:
    """A TSV of the sentence pairs with class names or scores; its split entry."""
    labels = [CLASS_NAMES[y] for y in PAIR_LABELS["rte"]] if kind == "class" else PAIR_LABELS["stsb"]
    rows = ["a\tb\tlabel", *(f"{a}\t{b}\t{y}" for (a, b), y in zip(SENTENCE_PAIRS, labels))]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return f"{{path: {path.name}, columns: {{text_a: a, text_b: b, label: label}}}}"


def task_of_type(ttype: TaskType, directory: Path) -> TaskDef:
    """A task of `ttype` with train and dev data in `directory`, read through load_task_defs."""
    if ttype.label_kind in ("class", "score"):
        split = _labeled_split(directory / "pairs.tsv", ttype.label_kind)
        splits = {"train": split, "dev": split}
    elif ttype.label_kind is None:  # a corpus; the type holds its dev split out, or reads the same file
        lines = CORPUS.read_text(encoding="utf-8").splitlines()[:200]
        (directory / "corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        splits = {"train": "{path: corpus.txt}"} | ({} if ttype.holdout_dev else {"dev": "{path: corpus.txt}"})
    else:
        pytest.fail(f"no test data for label kind {ttype.label_kind!r} of task type {ttype.name!r}: add it here")
    labels = f"    labels: {CLASS_NAMES}\n" if ttype.label_kind == "class" else ""
    body = "".join(f"      {name}: {entry}\n" for name, entry in splits.items())
    yml = directory / "tasks.yml"
    yml.write_text(f"tasks:\n  t:\n    type: {ttype.name}\n{labels}    splits:\n{body}", encoding="utf-8")
    return load_task_defs(yml)["t"]


def run_config(directory: Path) -> RunConfig:
    return RunConfig(
        train=TrainConfig(data_dir=str(directory), max_seq_len=SEQ, seed=0), mlm=MLMConfig(mlm_holdout=0.1)
    )


def prepared(name: str, directory: Path, encoder_dir: Path):
    """(task, model, tokenizer, run config, tokenized train and dev) for a task of type `name`."""
    task = task_of_type(TASK_TYPES.get(name), directory)
    cfg = run_config(directory)
    encoder, tokenizer = load_encoder(str(encoder_dir))
    torch.manual_seed(0)
    model = MultiTaskModel(encoder, {task.name: task})
    pipe = pipeline_for(task)
    cache = str(directory / "cache")
    data = {
        s: pipe.tokenize(pipe.read(task, s, str(directory), cfg), task, s, tokenizer, cfg, cache)
        for s in ("train", "dev")
    }
    return task, model, tokenizer, cfg, data


# ---------------------------------------------------------------- the registries agree
@pytest.mark.parametrize("name", TASK_TYPES.names())
def test_every_task_type_has_its_pipeline_head_and_consistent_metrics(name):
    ttype = TASK_TYPES.get(name)
    assert name in PIPELINES and ttype.head in HEADS
    known = set(ttype.metric_names())
    assert set(ttype.metrics) <= known and set(ttype.lower_is_better) <= known
    assert ttype.loss in TASK_LOSSES
    assert (ttype.parse_label is None) == (ttype.label_kind is None)


def test_old_import_paths_re_export_the_registries():
    assert mtadv.heads.HEADS is HEADS and mtadv.pipelines.PIPELINES is PIPELINES
    assert mtadv.pipelines.EvalRequest is EvalRequest and mtadv.pipelines.pipeline_for is pipeline_for


# ---------------------------------------------------------------- every head: build, forward, loss, backward
@pytest.mark.parametrize("head", HEADS.names())
def test_every_head_builds_runs_and_trains(head, tiny_encoder, tmp_path):
    users = _types_using(head)
    assert users, f"head {head!r} is used by no registered task type, so nothing can feed it a batch"
    task, model, tokenizer, cfg, data = prepared(users[0].name, tmp_path, tiny_encoder)
    collate = pipeline_for(task).collator(task, tokenizer, cfg)
    batch = collate([data["train"].data[i] for i in range(min(4, len(data["train"].data)))])
    out = model(batch, task=task.name)  # (B, C), (B,) or (N, V)
    assert out.shape[0] == batch["labels"].shape[0] and torch.isfinite(out).all()
    if task.labels:
        assert out.shape == (len(batch["labels"]), len(task.labels))
    loss = TASK_LOSSES.get(task.loss)(out, batch["labels"])
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.heads[task.head].parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
    assert model.encoder.get_input_embeddings().weight.grad is not None  # the loss reaches the shared encoder


# ---------------------------------------------------------------- every pipeline: evaluate and predict
@pytest.mark.parametrize("name", PIPELINES.names())
def test_every_pipeline_evaluates_and_predicts_a_few_rows(name, tiny_encoder, tmp_path):
    task, model, tokenizer, cfg, data = prepared(name, tmp_path, tiny_encoder)
    dev = data["dev"]
    req = EvalRequest(tokenizer, batch_size=2, device=torch.device("cpu"), progress=False)
    pipe = pipeline_for(task)
    model.train()
    metrics = pipe.evaluate(model, task, dev, req)
    diagnostics = [TOP_CLASS_SHARE] if task.type == "classification" else []  # reported beside the metrics
    assert list(metrics) == [*task.metrics, *diagnostics] and all(math.isfinite(v) for v in metrics.values())
    assert model.training  # evaluation leaves the mode as it found it

    preds = pipe.predict(model, task, dev, req)
    assert isinstance(preds, Predictions) and model.training
    n = len(preds.example_idx)
    assert n > 0 and len(preds.outputs) == n and (preds.labels is None or len(preds.labels) == n)
    assert np.all(np.diff(preds.example_idx) >= 0), "predictions come in row order"
    assert set(preds.example_idx) <= set(range(len(dev.data)))
    if task.labels:
        assert preds.outputs.shape == (n, len(task.labels)) and np.allclose(preds.outputs.sum(-1), 1.0, atol=1e-5)
    again = pipe.predict(
        model, task, dev, EvalRequest(tokenizer, batch_size=3, device=torch.device("cpu"), progress=False)
    )
    np.testing.assert_allclose(again.outputs, preds.outputs, rtol=1e-5, atol=1e-6)  # batching changes nothing


def test_a_type_that_reads_no_labels_refuses_a_label_column(tmp_path):
    unlabeled = [n for n in TASK_TYPES.names() if TASK_TYPES.get(n).parse_label is None]
    if not unlabeled:
        pytest.skip("every registered type reads labels")
    classes = next(TASK_TYPES.get(n) for n in TASK_TYPES.names() if TASK_TYPES.get(n).label_kind == "class")
    labeled = task_of_type(classes, tmp_path)
    task = dataclasses.replace(labeled, type=unlabeled[0], labels=None)  # the same rows, label column and all
    with pytest.raises(ConfigError, match="reads no labels; remove columns.label"):
        read_split(task, "train", str(tmp_path))
