"""Leaderboard files and per-example predictions: formatted, validated, then written all at once.

A leaderboard file (GLUE: CoLA.tsv, MNLI-m.tsv, AX.tsv, ...) is `index\\tprediction` followed by
one row per test example, in the test file's order, with the test file's own index values. Its
name comes from the task's `submission:` mapping and its vocabulary from the task definition:
`labels` for classification, a float clipped to `label_range` with 3 decimals for regression.

Nothing touches the disk until every file has been built in memory and validated
(`validate_submission`); `publish` then writes into a temporary folder and moves each file
into place, so a failure never leaves a partial submission behind.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import tempfile
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtadv.errors import ConfigError
from mtadv.taskdef import TaskDef

HEADER = ("index", "prediction")
SCORE_DECIMALS = 3
ZIP_NAME = "submission.zip"


@dataclass
class SubmissionFile:
    """One leaderboard file, built in memory."""

    name: str  # file name on the leaderboard, e.g. "MNLI-m.tsv"
    task: TaskDef
    source: str  # the test file it answers, for messages
    expected_ids: list[str]  # the test file's index values, in file order
    rows: list[tuple[str, str]]  # (index, prediction) in the order they will be written

    def text(self) -> str:
        lines = ["\t".join(HEADER)] + [f"{i}\t{p}" for i, p in self.rows]
        return "\n".join(lines) + "\n"


def format_prediction(task: TaskDef, output: np.ndarray) -> str:
    """One example's model output -> the leaderboard's label: a label name, or a clipped score."""
    if task.labels:
        return task.labels[int(np.argmax(output))]  # output: (C,) class probabilities
    score = float(output)
    if task.label_range is not None:
        score = min(max(score, task.label_range[0]), task.label_range[1])
    return f"{score:.{SCORE_DECIMALS}f}"


def build_submission(
    task: TaskDef, name: str, source: str, ids: Sequence[str], example_idx: np.ndarray, outputs: np.ndarray
) -> SubmissionFile:
    """Rows in the test file's order: example_idx (N,) says which file row each output (N, ...) is."""
    by_row = {int(i): out for i, out in zip(example_idx, outputs)}
    rows = [(ids[r], format_prediction(task, by_row[r])) for r in sorted(by_row)]
    return SubmissionFile(name=name, task=task, source=source, expected_ids=list(ids), rows=rows)


def validate_submission(sub: SubmissionFile) -> None:
    """The leaderboard's checks: row count, each index exactly once, each label in the vocabulary."""

    fail = _failure(sub.task, sub.name, sub.source)
    if len(sub.rows) != len(sub.expected_ids):
        raise fail(f"{len(sub.rows)} rows, but the test file has {len(sub.expected_ids)} examples")
    check_test_ids(sub.task, sub.name, sub.source, sub.expected_ids)
    counts = Counter(i for i, _ in sub.rows)
    repeated = [i for i, n in counts.items() if n > 1]
    if repeated:
        raise fail(f"index {repeated[0]!r} appears {counts[repeated[0]]} times")
    missing = [i for i in sub.expected_ids if i not in counts]
    if missing:
        raise fail(f"index {missing[0]!r} of the test file has no prediction ({len(missing)} missing)")
    for index, label in sub.rows:
        problem = _vocabulary_problem(sub.task, label)
        if problem:
            raise fail(f"index {index!r}: {problem}")


def check_test_ids(task: TaskDef, name: str, source: str, ids: Sequence[str]) -> None:
    """A test file whose index repeats cannot give a valid submission; checked before predicting too."""
    repeated = [i for i, n in Counter(ids).items() if n > 1]
    if repeated:
        fail = _failure(task, name, source)
        raise fail(f"the test file itself repeats index {repeated[0]!r}; fix the file or its `id` column")


def _failure(task: TaskDef, name: str, source: str):
    def fail(problem: str) -> ConfigError:
        return ConfigError(f"{problem}; nothing was written", file=name, task=task.name, field=f"submission ({source})")

    return fail


def _vocabulary_problem(task: TaskDef, label: str) -> str | None:
    if task.labels:
        return None if label in task.labels else f"label {label!r} is not one of {list(task.labels)}"
    try:
        score = float(label)
    except ValueError:
        return f"prediction {label!r} is not a number"
    if not math.isfinite(score):
        return f"prediction {label!r} is not finite"
    lo, hi = task.label_range or (-math.inf, math.inf)
    if not lo <= score <= hi:
        return f"score {label} is outside label_range [{lo}, {hi}]"
    if len(label.partition(".")[2]) != SCORE_DECIMALS:
        return f"score {label!r} is not written with {SCORE_DECIMALS} decimals"
    return None


def zip_submission(files: Sequence[SubmissionFile]) -> bytes:
    """submission.zip with every leaderboard file at its root."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for sub in files:
            zf.writestr(sub.name, sub.text())
    return buf.getvalue()


def prediction_records(
    task: TaskDef, ids: Sequence[str], example_idx: np.ndarray, outputs: np.ndarray, labels: np.ndarray | None
) -> list[dict[str, Any]]:
    """Per-example records for analysis and ensembling, in the split's file order."""
    records = []
    order = np.argsort(example_idx, kind="stable")
    for k in order:
        row = int(example_idx[k])
        rec: dict[str, Any] = {"id": ids[row]}
        if labels is not None:
            rec["gold"] = _label_name(task, labels[k])
        rec["predicted"] = _label_name(task, np.argmax(outputs[k]) if task.labels else outputs[k])
        if task.labels:
            rec["probabilities"] = {name: float(p) for name, p in zip(task.labels, outputs[k])}
        else:
            rec["score"] = float(outputs[k])
        records.append(rec)
    return records


def _label_name(task: TaskDef, value: Any) -> str | float:
    return task.labels[int(value)] if task.labels else float(value)


def jsonl_bytes(records: Sequence[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def publish(files: dict[str, bytes], output_dir: str) -> list[str]:
    """Write every file into output_dir: first all into a temp folder there, then rename each in.

    Callers validate before calling; an I/O error here removes the temp folder and leaves any
    files already in output_dir as they were.
    """
    os.makedirs(output_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".predict-tmp-", dir=output_dir)
    try:
        for name, data in files.items():
            path = os.path.join(tmp, name)
            with open(path, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for name in files:
            os.replace(os.path.join(tmp, name), os.path.join(output_dir, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [os.path.join(output_dir, name) for name in files]
