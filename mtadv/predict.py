"""Prediction from a checkpoint alone: GLUE leaderboard files for test splits, metrics for dev.

    python predict.py --checkpoint runs/glue/best --data_dir glue_data --output_dir submission/

Everything the run needs comes from the checkpoint directory: the encoder, tokenizer and heads,
the task definitions (file layout, label vocabularies, leaderboard file names) and the run
configuration. Every split goes through its task type's pipeline (mtadv.tasks), as the trainer's
evaluation does: read -> tokenize (at the run's max_seq_len) -> predict, with the same batch size,
precision and evaluation cap; dev metrics are `split_metrics` of those predictions, so they equal
`results.json` for that checkpoint.

Order: load and check everything (checkpoint, tasks, heads, data files), predict every split in
memory, build and validate every output file, and only then write them all at once.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import datasets
import torch

from mtadv.adversarial.teacher import BregmanTeacher
from mtadv.attacks import ATTACKS, Attack, build_attack
from mtadv.attacks.evaluate import attack_metrics, attacked_predictions
from mtadv.checkpoint import TEACHER_DIR, load_checkpoint
from mtadv.config import AttackConfig, RunConfig, TrainConfig, check_ranges, opt
from mtadv.data_utils.readers import split_path
from mtadv.data_utils.submission import (
    ZIP_NAME,
    SubmissionFile,
    build_submission,
    check_test_ids,
    jsonl_bytes,
    prediction_records,
    publish,
    validate_submission,
    zip_submission,
)
from mtadv.data_utils.tokenize import default_cache_dir
from mtadv.errors import ConfigError, UserError
from mtadv.evaluate import Predictions, split_metrics
from mtadv.model import MultiTaskModel
from mtadv.precision import autocast_dtype
from mtadv.resume import regularizer_state
from mtadv.taskdef import TaskDef
from mtadv.tasks import EvalRequest, pipeline_for

FROM_CHECKPOINT = "checkpoint"


@dataclass
class PredictConfig:
    """Flags of predict.py (every field is one --flag)."""

    checkpoint: str = opt("", "mtadv checkpoint directory, e.g. runs/glue/best (required)")
    split: str = opt("test", "test: leaderboard files (+ JSONL); dev: metrics.json + JSONL", choices=("test", "dev"))
    tasks: str = opt("", "comma-separated tasks (empty: every task the checkpoint has a head for, ax included)")
    data_dir: str = opt("", "root of the task files (empty: the --data_dir the checkpoint was trained with)")
    output_dir: str = opt("submission", "where the files go (created; existing files of the same name replaced)")
    batch_size: int = opt(0, "examples per batch (0: the run's --eval_batch_size, as training evaluated)", ge=0)
    device: str = opt("auto", "cpu, cuda, cuda:N or auto")
    precision: str = opt(
        FROM_CHECKPOINT,
        "fp32, bf16, fp16, auto, or checkpoint (the run's --precision, as training evaluated)",
        choices=(FROM_CHECKPOINT, "auto", "fp32", "bf16", "fp16"),
    )
    max_eval_samples: int = opt(
        -1,
        "cap examples per dev split (-1: the run's --max_eval_samples, so metrics match results.json; 0: all)",
        ge=-1,
    )
    use_teacher: bool = opt(
        False,
        "predict with the EMA teacher: the checkpoint's teacher/ folder (best/), or the teacher kept in a "
        "checkpoint-<step>/'s training state",
    )
    progress: bool = opt(True, "show progress bars")
    attack: str = opt(
        "",
        "with --split dev: score under this robustness attack (pgd, typo; settings: --attack_*); metrics.json "
        "then holds the metrics under attack plus attack_success_rate, the JSONL the attacked predictions",
    )
    cache_dir: str = opt("", "tokenization cache (empty: $MTADV_CACHE or ~/.cache/mtadv)")


@dataclass
class SplitJob:
    """One split to predict: its task, raw rows and where they came from."""

    task: TaskDef
    split: str
    raw: datasets.Dataset
    source: str


@dataclass
class SplitResult:
    job: SplitJob
    preds: Predictions
    extra_metrics: dict[str, float] = field(default_factory=dict)  # attack_success_rate under --attack


def config_from_namespace(values: dict[str, Any]) -> PredictConfig:
    known = {f.name for f in fields(PredictConfig)}
    return PredictConfig(**{k: v for k, v in values.items() if k in known and v is not None})


def attack_config_from_namespace(values: dict[str, Any]) -> AttackConfig:
    known = {f.name for f in fields(AttackConfig)}
    return AttackConfig(**{k: v for k, v in values.items() if k in known and v is not None})


def run_predict(cfg: PredictConfig, attack_cfg: AttackConfig | None = None) -> list[str]:
    """Check, predict, build, validate, write. Returns the written paths."""
    check_ranges(cfg)
    attack = _attack(cfg, attack_cfg or AttackConfig())
    if os.path.exists(cfg.output_dir) and not os.path.isdir(cfg.output_dir):
        raise UserError(f"--output_dir {cfg.output_dir} is a file, not a directory; pass a directory path")
    if not cfg.progress:
        datasets.disable_progress_bars()
    model, tokenizer, task_defs, run_config = load_model(cfg)
    train_cfg = run_config.get("train", {})
    tasks = select_prediction_tasks(model, task_defs, cfg)
    jobs = read_jobs(tasks, cfg, train_cfg)
    device = _device(cfg.device)
    model.to(device)
    results = [predict_job(model, tokenizer, job, cfg, train_cfg, device, attack) for job in jobs]
    files = build_outputs(results, cfg, attack)
    written = publish(files, cfg.output_dir)
    _summarize(results, cfg, written)
    return written


def load_model(cfg: PredictConfig) -> tuple[MultiTaskModel, Any, dict[str, TaskDef], dict[str, Any]]:
    if not cfg.checkpoint:
        raise UserError("--checkpoint is required: the run's best/ directory, e.g. runs/glue/best")
    if not os.path.isdir(cfg.checkpoint):
        raise UserError(f"--checkpoint {cfg.checkpoint}: no such directory; pass the run's best/ directory")
    if not cfg.use_teacher:
        return load_checkpoint(cfg.checkpoint)
    if os.path.isdir(os.path.join(cfg.checkpoint, TEACHER_DIR)):
        return load_checkpoint(os.path.join(cfg.checkpoint, TEACHER_DIR))
    state = regularizer_state(Path(cfg.checkpoint), BregmanTeacher.name)  # a checkpoint-<step>/
    if not state:
        raise UserError(
            f"--use_teacher: {cfg.checkpoint} has no EMA teacher ({TEACHER_DIR}/ is missing); it is saved only "
            "by runs trained with the Bregman teacher (--smart), once it has started. Drop --use_teacher to predict "
            "with the student."
        )
    model, tokenizer, tasks, run_config = load_checkpoint(cfg.checkpoint)
    model.load_state_dict(BregmanTeacher.weights_from_state(state))
    return model, tokenizer, tasks, run_config


def select_prediction_tasks(model: MultiTaskModel, task_defs: dict[str, TaskDef], cfg: PredictConfig) -> list[TaskDef]:
    """--tasks, or every task with a head in the checkpoint that has a split of the requested kind."""
    where = os.path.join(cfg.checkpoint, "task_defs.yml")
    has_kind = {t: _splits_of_kind(task_defs[t], cfg.split) for t in task_defs}
    if not cfg.tasks:
        labeled = {t for t, d in task_defs.items() if d.task_type.label_kind is not None}  # not mlm
        chosen = [task_defs[t] for t in model.task_to_head if t in labeled and has_kind[t]]
        if not chosen:
            raise ConfigError(f"no task with a head in this checkpoint has a {cfg.split} split", file=where)
        return chosen
    chosen = []
    for name in dict.fromkeys(n.strip() for n in cfg.tasks.split(",") if n.strip()):  # ordered, no repeats
        if name not in task_defs:
            raise ConfigError(f"unknown task {name!r}; tasks in the checkpoint: {sorted(task_defs)}", file=where)
        if name not in model.task_to_head:
            raise ConfigError(
                f"the checkpoint has no head for task {name!r} (nor for its head {task_defs[name].head!r}); heads: "
                f"{sorted(model.heads)}. Train the task, or leave it out of --tasks",
                file=where,
                task=name,
                field="--tasks",
            )
        if task_defs[name].task_type.label_kind is None:
            raise ConfigError(
                f"is a {task_defs[name].type} task; predict.py predicts classification and regression tasks",
                file=where,
                task=name,
                field="--tasks",
            )
        if not has_kind[name]:
            raise ConfigError(
                f"has no {cfg.split} split (splits: {list(task_defs[name].splits)}); use another --split",
                file=where,
                task=name,
                field="splits",
            )
        chosen.append(task_defs[name])
    return chosen


def _splits_of_kind(task: TaskDef, kind: str) -> list[str]:
    return [s.name for s in (task.dev_splits() if kind == "dev" else task.test_splits())]


def read_jobs(tasks: list[TaskDef], cfg: PredictConfig, train_cfg: dict[str, Any]) -> list[SplitJob]:
    """Read every split first, so a missing or malformed file fails before any prediction."""
    data_dir = _data_dir(cfg, train_cfg)
    _check_files_exist(tasks, cfg, data_dir)
    cap = train_cfg.get("max_eval_samples", 0) if cfg.max_eval_samples < 0 else cfg.max_eval_samples
    settings = pipeline_settings(cfg, train_cfg)
    jobs = []
    for task in tasks:
        for split in _splits_of_kind(task, cfg.split):
            raw = pipeline_for(task).read(task, split, data_dir, settings)
            if cfg.split == "dev":
                if "label" not in raw.column_names:
                    raise ConfigError(
                        "dev split has no label column; metrics need one", task=task.name, field=f"splits.{split}"
                    )
                raw = raw.select(range(min(cap, len(raw)))) if cap else raw  # the trainer's cap
            sdef = task.splits[split]
            source = sdef.hub if sdef.format == "hub" else split_path(sdef, data_dir)
            if cfg.split == "test" and split in task.submission:  # fail before predicting, not after
                check_test_ids(task, task.submission[split], str(source), raw["id"])
            jobs.append(SplitJob(task, split, raw, str(source)))
    return jobs


def _data_dir(cfg: PredictConfig, train_cfg: dict[str, Any]) -> str:
    return cfg.data_dir or train_cfg.get("data_dir", "")


def pipeline_settings(cfg: PredictConfig, train_cfg: dict[str, Any]) -> RunConfig:
    """What a task type's read and tokenize stages are given: the run's train settings (the fields this
    version knows; max_seq_len above all) with this command's data directory."""
    known = {f.name for f in fields(TrainConfig)}
    train = TrainConfig(**{k: v for k, v in train_cfg.items() if k in known})
    train.data_dir = _data_dir(cfg, train_cfg)
    return RunConfig(train=train)


def _check_files_exist(tasks: list[TaskDef], cfg: PredictConfig, data_dir: str) -> None:
    """A missing file is an error (a submission must be complete); say which tasks could be predicted."""
    missing, complete = [], []
    for task in tasks:
        splits = [task.splits[s] for s in _splits_of_kind(task, cfg.split)]
        absent = [s for s in splits if s.format != "hub" and not os.path.isfile(split_path(s, data_dir))]
        missing += [(task, s) for s in absent]
        if not absent:
            complete.append(task.name)
    if not missing:
        return
    task, split = missing[0]
    hint = f"; to predict only the tasks whose files exist, pass --tasks {','.join(complete)}" if complete else ""
    raise ConfigError(
        f"data file not found ({len(missing)} missing); check --data_dir ({data_dir}) and splits.{split.name}.path"
        + hint,
        file=split_path(split, data_dir),
        task=task.name,
        field=f"splits.{split.name}.path",
    )


def _attack(cfg: PredictConfig, settings: AttackConfig) -> Attack | None:
    """The --attack to score under, checked before anything is read; None without one."""
    if not cfg.attack:
        return None
    check_ranges(settings)
    if cfg.split != "dev":
        raise UserError(f"--attack {cfg.attack} scores labeled data: add --split dev (test splits have no labels)")
    if cfg.attack not in ATTACKS:
        raise ConfigError(f"unknown attack {cfg.attack!r}; known: {', '.join(ATTACKS.names())}", field="--attack")
    return build_attack(cfg.attack, settings)


def predict_job(
    model: MultiTaskModel,
    tokenizer,
    job: SplitJob,
    cfg: PredictConfig,
    train_cfg: dict[str, Any],
    device,
    attack: Attack | None = None,
) -> SplitResult:
    """Tokenize and predict one split through its task type's pipeline, as the trainer's evaluation does
    (under `attack` if given)."""
    settings = pipeline_settings(cfg, train_cfg)
    cache = cfg.cache_dir or train_cfg.get("cache_dir") or default_cache_dir()
    pipeline = pipeline_for(job.task)
    tokenized = pipeline.tokenize(job.raw, job.task, job.split, tokenizer, settings, cache)
    precision = train_cfg.get("precision", "auto") if cfg.precision == FROM_CHECKPOINT else cfg.precision
    batch_size = cfg.batch_size or int(train_cfg.get("eval_batch_size", 128))
    req = EvalRequest(tokenizer, batch_size, device, autocast_dtype(precision, device), progress=cfg.progress)
    if attack is not None:
        max_len = settings.train.max_seq_len
        clean, preds = attacked_predictions(model, job.task, tokenized, req, attack, max_len, cache)
        extra = {k: v for k, v in attack_metrics(job.task, clean, preds).items() if k == "attack_success_rate"}
        return SplitResult(job, preds, extra)
    return SplitResult(job, pipeline.predict(model, job.task, tokenized, req))


def build_outputs(results: list[SplitResult], cfg: PredictConfig, attack: Attack | None = None) -> dict[str, bytes]:
    """Every output file's bytes, validated; nothing is written here."""
    files: dict[str, bytes] = {}
    leaderboard: list[SubmissionFile] = []
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    for r in results:
        task, split, ids = r.job.task, r.job.split, r.job.raw["id"]
        records = prediction_records(task, ids, r.preds.example_idx, r.preds.outputs, r.preds.labels)
        files[f"{task.name}.{split}.jsonl"] = jsonl_bytes(records)
        if cfg.split == "dev":
            metrics.setdefault(task.name, {})[split] = split_metrics(task, r.preds) | r.extra_metrics
        elif split in task.submission:
            sub = build_submission(
                task, task.submission[split], r.job.source, ids, r.preds.example_idx, r.preds.outputs
            )
            validate_submission(sub)
            leaderboard.append(sub)
    _check_unique_names(leaderboard)
    for sub in leaderboard:
        files[sub.name] = sub.text().encode("utf-8")
    if leaderboard:
        files[ZIP_NAME] = zip_submission(leaderboard)
    if cfg.split == "dev":
        summary = {"results": metrics, "checkpoint": cfg.checkpoint, "teacher": cfg.use_teacher}
        summary["examples"] = {f"{r.job.task.name}/{r.job.split}": len(r.job.raw) for r in results}
        if attack is not None:  # the same layout as a clean run, with what was attacked and how
            summary["attack"] = attack.settings()
        files["metrics.json"] = (json.dumps(summary, indent=2) + "\n").encode("utf-8")
    return files


def _check_unique_names(subs: list[SubmissionFile]) -> None:
    seen: dict[str, str] = {}
    for sub in subs:
        if sub.name in seen:
            raise ConfigError(
                f"leaderboard file {sub.name!r} is claimed by tasks {seen[sub.name]!r} and {sub.task.name!r}; "
                "give each test split its own file name; nothing was written",
                file=sub.task.source_file,
                task=sub.task.name,
                field="submission",
            )
        seen[sub.name] = sub.task.name


def _device(flag: str) -> torch.device:
    if flag == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(flag)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {flag}: CUDA is not available here; use --device cpu")
    return device


def _summarize(results: list[SplitResult], cfg: PredictConfig, written: list[str]) -> None:
    for r in results:
        line = f"{r.job.task.name:<8} {r.job.split:<16} {len(r.job.raw):>6} examples"
        if cfg.split == "dev":
            ms = split_metrics(r.job.task, r.preds) | r.extra_metrics
            line += "  " + "  ".join(f"{m}={v:.2f}" for m, v in ms.items())
        print(line)
    print(f"wrote {len(written)} files to {cfg.output_dir}: {', '.join(os.path.basename(p) for p in written)}")
