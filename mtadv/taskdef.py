"""Task definitions: the YAML registry of tasks, parsed into typed, validated objects.

Every problem is reported as a ConfigError naming the file, the task, the field and what was
expected, before any data is read or any output is written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mtadv.errors import ConfigError
from mtadv.registry import Registry

SPLIT_KEYS = {"path", "format", "header", "num_columns", "columns", "hub", "subset", "split", "passages"}
PASSAGES = ("line", "paragraph")  # txt corpora: one passage per line, or blank-line-separated paragraphs
COLUMN_ROLES = {"text_a", "text_b", "label", "id", "text"}
FORMATS = {"tsv", "csv", "jsonl", "txt", "hub"}
TASK_KEYS = {
    "type",
    "labels",
    "label_range",
    "head",
    "metrics",
    "loss",
    "adv_loss",
    "splits",
    "submission",
    "adv",
}


@dataclass(frozen=True)
class TaskType:
    """What a task type means: its head, its labels, its metrics and its defaults.

    The built-in types register theirs in their own module of mtadv.tasks (labeled.py: classification
    and regression; mlm.py), together with the head and the pipeline (read -> tokenize -> collate ->
    evaluate -> predict) of the same name; docs/task_definitions.md says how to add one."""

    name: str
    head: str  # name in mtadv.tasks.HEADS
    label_kind: str | None  # "class" (index into labels), "score" (float) or None (unlabeled)
    loss: str
    adv_loss: str
    metrics: tuple[str, ...]  # the default `metrics:`
    # Every metric name a task of this type may list (what its pipeline's evaluate computes).
    metric_names: Callable[[], Sequence[str]]
    # One row's raw label value -> the value the head is trained on (a class index, a float), raising
    # ValueError with the problem; None: the type reads no labels (mlm).
    parse_label: Callable[[TaskDef, Any], Any] | None = None
    # Without a dev split, hold one out of the train split (--mlm_holdout), format "holdout".
    holdout_dev: bool = False
    lower_is_better: tuple[str, ...] = ()  # metrics where lower is better (mlm: loss, perplexity)


# Filled by the modules of mtadv.tasks, imported on the first lookup (Registry's `discover`).
TASK_TYPES: Registry[TaskType] = Registry("task type", discover="mtadv.tasks")


def lower_is_better() -> set[str]:
    """The metrics that some registered task type reports lower-is-better (best-checkpoint selection)."""
    return {m for name in TASK_TYPES.names() for m in TASK_TYPES.get(name).lower_is_better}


@dataclass(frozen=True)
class SplitDef:
    """Where one split's examples come from and which columns hold what."""

    name: str
    format: str  # tsv | csv | jsonl | txt | hub
    path: str | None = None
    header: bool = True
    num_columns: int | None = None
    columns: dict[str, str | int] = field(default_factory=dict)
    hub: str | None = None  # datasets hub name (format == "hub")
    subset: str | None = None
    split: str | None = None
    passages: str = "line"  # txt corpora: "line" or "paragraph" (see data_utils/corpus.py)

    @property
    def is_train(self) -> bool:
        return self.name == "train"

    @property
    def is_dev(self) -> bool:
        return self.name == "dev" or self.name.startswith("dev_")

    @property
    def is_test(self) -> bool:
        return self.name == "test" or self.name.startswith("test_")


@dataclass(frozen=True)
class TaskDef:
    """One task: its type, labels, files, metrics, losses and per-task overrides."""

    name: str
    type: str
    splits: dict[str, SplitDef]
    metrics: tuple[str, ...]
    loss: str
    adv_loss: str
    labels: tuple[str, ...] | None = None
    label_range: tuple[float, float] | None = None
    head: str = ""
    submission: dict[str, str] = field(default_factory=dict)
    adv: dict[str, Any] = field(default_factory=dict)
    source_file: str = ""

    @property
    def task_type(self) -> TaskType:
        return TASK_TYPES.get(self.type)

    @property
    def num_outputs(self) -> int:
        """Width of the head's output: number of labels, or 1 for a score."""
        return len(self.labels) if self.labels else 1

    @property
    def primary_metric(self) -> str:
        return self.metrics[0]

    def dev_splits(self) -> list[SplitDef]:
        return [s for s in self.splits.values() if s.is_dev]

    def test_splits(self) -> list[SplitDef]:
        return [s for s in self.splits.values() if s.is_test]


def load_task_defs(path: str | Path) -> dict[str, TaskDef]:
    """Read and validate a task-definition YAML file."""
    path = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError("file not found; pass an existing YAML file to --task_def", file=path) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"malformed YAML: {e}", file=path) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text (byte {e.start}); save the file as UTF-8", file=path) from None
    if not isinstance(raw, dict) or set(raw) != {"tasks"} or not isinstance(raw["tasks"], dict):
        raise ConfigError("expected a mapping with the single top-level key 'tasks'", file=path)
    tasks = {name: _parse_task(str(name), spec, path) for name, spec in raw["tasks"].items()}
    _check_shared_heads(tasks, path)
    return tasks


def select_tasks(tasks: dict[str, TaskDef], names: str | list[str] | None, file: str) -> dict[str, TaskDef]:
    """Pick the tasks named on the CLI; default: every task that has a train split."""
    if not names:
        return {n: t for n, t in tasks.items() if "train" in t.splits}
    wanted = names.split(",") if isinstance(names, str) else list(names)
    unknown = [n for n in wanted if n not in tasks]
    if unknown:
        raise ConfigError(f"unknown task(s) {unknown}; tasks in the file: {sorted(tasks)}", file=file, field="--tasks")
    return {n: tasks[n] for n in wanted}


def _parse_task(name: str, spec: Any, file: str) -> TaskDef:
    def err(fld: str, problem: str) -> ConfigError:
        return ConfigError(problem, file=file, task=name, field=fld)

    if not isinstance(spec, dict):
        raise err("", "expected a mapping of task fields")
    _no_unknown_keys(spec, TASK_KEYS, err, "")
    if "type" not in spec:
        raise err("type", f"missing; one of {TASK_TYPES.names()}")
    try:
        ttype = TASK_TYPES.get(spec["type"])
    except KeyError as e:
        raise err("type", str(e.args[0])) from None
    labels, label_range = _parse_labels(spec, ttype, err)
    metrics = tuple(_as_list(spec.get("metrics", list(ttype.metrics)), err, "metrics"))
    loss, adv_loss = spec.get("loss", ttype.loss), spec.get("adv_loss", ttype.adv_loss)
    _check_names(metrics, loss, adv_loss, err, ttype)
    splits = _parse_splits(spec.get("splits"), err)
    if ttype.holdout_dev and "train" in splits and not any(s.is_dev for s in splits.values()):
        splits["dev"] = SplitDef(name="dev", format="holdout")  # read by data_utils/corpus.py
    submission = spec.get("submission") or {}
    if not isinstance(submission, dict) or any(s not in splits for s in submission):
        raise err("submission", f"expected a mapping from a test split ({list(splits)}) to a file name")
    adv = spec.get("adv") or {}
    if not isinstance(adv, dict):
        raise err("adv", "expected a mapping of adversarial settings, e.g. {method: smart, adv_eps: 1e-5}")
    return TaskDef(
        name=name,
        type=ttype.name,
        splits=splits,
        metrics=metrics,
        loss=loss,
        adv_loss=adv_loss,
        labels=labels,
        label_range=label_range,
        head=str(spec.get("head", name)),
        submission={str(k): str(v) for k, v in submission.items()},
        adv=dict(adv),
        source_file=file,
    )


def _parse_labels(spec: dict, ttype: TaskType, err) -> tuple[tuple[str, ...] | None, tuple[float, float] | None]:
    labels = spec.get("labels")
    if ttype.label_kind == "class":
        if not isinstance(labels, list) or len(labels) < 2:
            raise err("labels", "a classification task needs a list of at least 2 label names")
        labels = tuple(str(x) for x in labels)
        if len(set(labels)) != len(labels):
            raise err("labels", f"duplicate label names in {list(labels)}")
    elif labels is not None:
        raise err("labels", f"a {ttype.name} task has no label list; remove 'labels'")
    rng = spec.get("label_range")
    if rng is not None:
        if not (isinstance(rng, list) and len(rng) == 2 and all(isinstance(v, (int, float)) for v in rng)):
            raise err("label_range", "expected [min, max], e.g. [0.0, 5.0]")
        rng = (float(rng[0]), float(rng[1]))
    return labels, rng


def _check_names(metrics: tuple[str, ...], loss: str, adv_loss: str, err, ttype: TaskType) -> None:
    from mtadv.losses import DIVERGENCES, TASK_LOSSES  # light-import: torch, for a module that parses YAML

    known = list(ttype.metric_names())
    for m in metrics:
        if m not in known:
            raise err("metrics", f"unknown metric {m!r} for a {ttype.name} task; known: {', '.join(known)}")
    if loss not in TASK_LOSSES:
        raise err("loss", f"unknown loss {loss!r}; known: {', '.join(TASK_LOSSES.names())}")
    if adv_loss not in DIVERGENCES:
        raise err("adv_loss", f"unknown divergence {adv_loss!r}; known: {', '.join(DIVERGENCES.names())}")


def _parse_splits(raw: Any, err) -> dict[str, SplitDef]:
    if not isinstance(raw, dict) or not raw:
        raise err("splits", "expected a mapping of split name (train, dev, test, dev_*, test_*) to a file")
    splits = {}
    for sname, s in raw.items():
        fld = f"splits.{sname}"
        sname = str(sname)
        if not (sname == "train" or sname.split("_")[0] in ("dev", "test")):
            raise err(fld, "split names are train, dev, test, or dev_<name> / test_<name>")
        if not isinstance(s, dict):
            raise err(fld, "expected a mapping with path, header and columns")
        _no_unknown_keys(s, SPLIT_KEYS, err, fld)
        splits[sname] = _parse_split(sname, s, lambda p, f=fld: err(f, p))
    return splits


def _parse_split(name: str, s: dict, err) -> SplitDef:
    fmt = s.get("format") or ("hub" if "hub" in s else _format_from_path(s.get("path")))
    if fmt not in FORMATS:
        raise err(f"format {fmt!r} is not one of {sorted(FORMATS)}; set 'format' or use a .tsv/.csv/.jsonl path")
    if fmt != "hub" and not s.get("path"):
        raise err("needs a 'path' (relative to --data_dir) or a 'hub' dataset name")
    columns = s.get("columns") or {}
    if not isinstance(columns, dict) or set(columns) - COLUMN_ROLES:
        raise err(f"'columns' maps roles {sorted(COLUMN_ROLES)} to column names or 0-based indices")
    header = bool(s.get("header", True))
    for role, col in columns.items():
        if fmt in ("tsv", "csv") and not header and not isinstance(col, int):
            raise err(f"columns.{role}: a file without header is addressed by 0-based index, got {col!r}")
    passages = s.get("passages", "line")
    if passages not in PASSAGES:
        raise err(f"passages must be one of {list(PASSAGES)}, got {passages!r}")
    ncols = s.get("num_columns")
    if ncols is not None and (not isinstance(ncols, int) or ncols < 1):
        raise err(f"num_columns must be a positive integer, got {ncols!r}")
    return SplitDef(
        name=name,
        format=fmt,
        path=s.get("path"),
        header=header,
        num_columns=ncols,
        columns=dict(columns),
        hub=s.get("hub"),
        subset=s.get("subset"),
        split=s.get("split"),
        passages=passages,
    )


def _format_from_path(path: str | None) -> str | None:
    if not path:
        return None
    suffix = Path(path).suffix.lower().lstrip(".")
    return {"tsv": "tsv", "csv": "csv", "jsonl": "jsonl", "json": "jsonl", "txt": "txt"}.get(suffix, suffix)


def _check_shared_heads(tasks: dict[str, TaskDef], file: str) -> None:
    """Tasks sharing a head must agree on its width (ax uses mnli's 3-way head)."""
    width: dict[str, tuple[str, int]] = {}
    for t in tasks.values():
        if t.head in width and width[t.head][1] != t.num_outputs:
            other, n = width[t.head]
            raise ConfigError(
                f"shares head {t.head!r} with task {other!r}, which has {n} outputs, but has {t.num_outputs}",
                file=file,
                task=t.name,
                field="head",
            )
        width.setdefault(t.head, (t.name, t.num_outputs))


def _no_unknown_keys(spec: dict, known: set[str], err, prefix: str) -> None:
    unknown = sorted(str(k) for k in set(spec) - known)
    if unknown:
        where = prefix or "task"
        fields_ = ", ".join(f"{prefix}.{k}" if prefix else k for k in unknown)  # name the offending key(s)
        raise err(fields_, f"unknown key(s) {unknown} in {where}; known keys: {sorted(known)}")


def _as_list(value: Any, err, fld: str) -> list:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        raise err(fld, "expected a non-empty list")
    return value
