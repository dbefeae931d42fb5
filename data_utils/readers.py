"""Read one split of a task into a `datasets.Dataset` of raw examples, validating as we go.

Output columns: `id` (str), `text_a` (str), `text_b` (str, pair tasks only) and `label`
(as the task type parses it: an int class index or a float score; absent for test splits without
labels).

GLUE quirks handled here: CoLA train/dev have no header; MRPC's header starts with a
byte-order mark (read as utf-8-sig); MNLI/QNLI/QQP fields hold unbalanced quote characters,
so TSV is read with quoting disabled.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import datasets

from mtadv.errors import ConfigError
from mtadv.registry import Registry
from mtadv.taskdef import SplitDef, TaskDef

# A row source yields (line number, list of fields or dict of fields).
RowSource = Callable[[SplitDef, str], Iterator[tuple[int, Any]]]
ROW_SOURCES: Registry[RowSource] = Registry("file format")

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # some GLUE fields are long parse trees


def split_path(split: SplitDef, data_dir: str | None) -> str:
    assert split.path is not None
    return split.path if os.path.isabs(split.path) or not data_dir else os.path.join(data_dir, split.path)


def existing_source(task: TaskDef, split: SplitDef, data_dir: str | None, what: str) -> str:
    """The split's file path (or hub name); a missing file is a ConfigError naming the fix."""
    where = split.hub if split.format == "hub" else split_path(split, data_dir)
    if split.format != "hub" and not os.path.isfile(where):
        raise ConfigError(
            f"{what} not found; check --data_dir ({data_dir}) and splits.{split.name}.path",
            file=where,
            task=task.name,
            field=f"splits.{split.name}.path",
        )
    return where


def read_split(task: TaskDef, split_name: str, data_dir: str | None) -> datasets.Dataset:
    """Read and validate one split; raises ConfigError naming file, task and field."""
    split = task.splits[split_name]
    where = existing_source(task, split, data_dir, "data file")
    rows = _rows(task, split, where)
    if not rows["id"]:
        raise ConfigError(
            "split is empty: no examples after the header", file=where, task=task.name, field=f"splits.{split_name}"
        )
    return datasets.Dataset.from_dict(rows)


def _rows(task: TaskDef, split: SplitDef, where: str) -> dict[str, list]:
    def err(lineno: int | None, problem: str, fld: str = "columns") -> ConfigError:
        file = f"{where}:{lineno}" if lineno else where
        return ConfigError(problem, file=file, task=task.name, field=f"splits.{split.name}.{fld}")

    cols = split.columns
    out: dict[str, list] = {"id": []}
    for role in ("text_a", "text_b", "label"):
        if role in cols:
            out[role] = []
    if "text_a" not in cols:
        raise err(None, "needs a text_a column")
    try:
        for lineno, row in ROW_SOURCES.get(split.format)(split, where):
            get = _getter(row, lineno, err)
            out["id"].append(str(get(cols["id"])) if "id" in cols else str(len(out["id"])))
            for role in ("text_a", "text_b"):
                if role in cols:
                    out[role].append(str(get(cols[role])))
            if "label" in cols:
                out["label"].append(_label(task, get(cols["label"]), lambda p, n=lineno: err(n, p, "label")))
    except UnicodeDecodeError:
        lineno, bad = _first_undecodable_line(where)
        raise err(
            lineno,
            f"not UTF-8 text (byte(s) {bad!r}); re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8",
            "path",
        ) from None
    except ConfigError as e:
        if e.task is None:  # raised by a row source, which does not know the task
            raise ConfigError(e.problem, file=e.file, task=task.name, field=e.field) from None
        raise
    return out


def _first_undecodable_line(path: str) -> tuple[int | None, bytes]:
    """Where a decode error is: the decoder's offset is relative to a buffered chunk, not the file."""
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as e:
                return lineno, line[e.start : e.end]
    return None, b""


def _getter(row: Any, lineno: int, err) -> Callable[[str | int], Any]:
    def get(col: str | int) -> Any:
        try:
            return row[col]
        except (KeyError, IndexError):
            raise err(lineno, f"row has no column {col!r}; {_columns_of(row)}") from None

    return get


def _columns_of(row: Any) -> str:
    """What the file has: its header's (or record's) names, or its number of columns."""
    if isinstance(row, dict):
        return f"its columns are {list(row)}; fix 'columns' in the task definition"
    return f"it has {len(row)} columns (indices 0-{len(row) - 1}); fix 'columns' or 'header' in the task definition"


def _label(task: TaskDef, raw: Any, err) -> Any:
    """The row's label as the task type parses it (mtadv.tasks: a class index, a float score)."""
    parse = task.task_type.parse_label
    if parse is None:
        raise err(f"a {task.type} task reads no labels; remove columns.label")
    try:
        return parse(task, raw)
    except ValueError as e:
        raise err(str(e)) from None


def _delimited(delimiter: str, quoting: int) -> RowSource:
    def rows(split: SplitDef, path: str) -> Iterator[tuple[int, Any]]:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter=delimiter, quoting=quoting)
            header = next(reader, None) if split.header else None
            expected = len(header) if header else split.num_columns
            for fields in reader:
                lineno = reader.line_num
                if not fields:
                    continue  # a blank line, e.g. a trailing newline
                expected = expected or len(fields)
                if len(fields) != expected:
                    raise ConfigError(
                        f"row has {len(fields)} columns, expected {expected}"
                        + (" (as in the header)" if header else "; fix the row or 'num_columns'"),
                        file=f"{path}:{lineno}",
                        field=f"splits.{split.name}.columns",
                    )
                yield lineno, dict(zip(header, fields)) if header else fields

    return rows


ROW_SOURCES.register("tsv")(_delimited("\t", csv.QUOTE_NONE))
ROW_SOURCES.register("csv")(_delimited(",", csv.QUOTE_MINIMAL))


@ROW_SOURCES.register("jsonl")
def _jsonl(split: SplitDef, path: str) -> Iterator[tuple[int, Any]]:
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(
                    f"invalid JSON: {e.msg}", file=f"{path}:{lineno}", field=f"splits.{split.name}"
                ) from None


@ROW_SOURCES.register("hub")
def _hub(split: SplitDef, name: str) -> Iterator[tuple[int, Any]]:
    try:
        ds = datasets.load_dataset(name, split.subset, split=split.split or split.name)
    except Exception as e:  # network, unknown name, ...: surface it as a config problem
        raise ConfigError(f"could not load hub dataset: {e}", file=name, field=f"splits.{split.name}.hub") from None
    for i, row in enumerate(ds):
        yield i + 1, row
