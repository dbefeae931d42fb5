"""Build a run from its config: validate everything, then model, data and trainer.

Order matters: every check that can fail on user input (task definitions, adversarial
settings, data files, checkpoint heads) runs before the output directory is created, so bad
input never leaves a half-written run behind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
import torch.distributed as dist
from transformers import set_seed

from data_utils.readers import read_split
from data_utils.tokenize import TokenizedSplit, default_cache_dir, tokenize_split
from mtadv.adversarial import build_regularizers
from mtadv.checkpoint import load_encoder, load_heads_into, resolve_model_path
from mtadv.config import RunConfig
from mtadv.errors import ConfigError
from mtadv.model import MultiTaskModel
from mtadv.taskdef import TaskDef, load_task_defs, select_tasks
from mtadv.tracking import RunTracker
from mtadv.trainer import LOWER_IS_BETTER, Trainer


@dataclass
class RawData:
    train: dict[str, datasets.Dataset]
    eval: dict[tuple[str, str], datasets.Dataset]


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def read_task_data(tasks: dict[str, TaskDef], data_dir: str, max_train: int, max_eval: int) -> RawData:
    """Read and validate the train and dev splits of every selected task."""
    train, evals = {}, {}
    for name, task in tasks.items():
        if "train" not in task.splits:
            raise ConfigError(
                "has no train split; add one or leave the task out of --tasks",
                file=task.source_file,
                task=name,
                field="splits.train",
            )
        train[name] = _cap(read_split(task, "train", data_dir), max_train)
        for split in task.dev_splits():
            evals[(name, split.name)] = _cap(read_split(task, split.name, data_dir), max_eval)
    return RawData(train, evals)


def _cap(ds: datasets.Dataset, n: int) -> datasets.Dataset:
    return ds.select(range(min(n, len(ds)))) if n else ds


def source_key(task: TaskDef, split: str, data_dir: str) -> tuple:
    """Identity of a split's source for the tokenization cache: file path, size and mtime."""
    s = task.splits[split]
    if s.format == "hub":
        return (s.hub, s.subset, s.split, split)
    path = s.path if os.path.isabs(s.path) else os.path.join(data_dir, s.path)
    st = os.stat(path)
    return (os.path.abspath(path), st.st_size, st.st_mtime_ns, s.columns, task.labels, task.type)


def tokenize_all(raw: RawData, tasks: dict[str, TaskDef], tokenizer, cfg: RunConfig):
    tc = cfg.train
    cache = tc.cache_dir or default_cache_dir()

    def tok(task: str, split: str, ds: datasets.Dataset) -> TokenizedSplit:
        key = (source_key(tasks[task], split, tc.data_dir), len(ds))
        return tokenize_split(ds, tokenizer, tc.max_seq_len, cache, key)

    train = {t: tok(t, "train", ds) for t, ds in raw.train.items()}
    evals = {k: tok(k[0], k[1], ds) for k, ds in raw.eval.items()}
    return train, evals


def init_distributed(device_flag: str) -> tuple[DistInfo, torch.device]:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; gloo on CPU, nccl on GPU."""
    info = DistInfo(
        int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
    )
    if device_flag == "auto":
        device = torch.device(f"cuda:{info.local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(device_flag)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if info.enabled and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return info, device


def build_model(cfg: RunConfig, tasks: dict[str, TaskDef]):
    encoder, tokenizer = load_encoder(cfg.train.init_checkpoint, cfg.train.trust_remote_code)
    model = MultiTaskModel(encoder, tasks, head_dropout=cfg.train.head_dropout)
    path = resolve_model_path(cfg.train.init_checkpoint)
    if os.path.isdir(path):
        load_heads_into(model, path)  # continuing from an mtadv checkpoint keeps its heads
    return model, tokenizer


def check_run_flags(cfg: RunConfig, tasks: dict[str, TaskDef]) -> None:
    """Flags that would otherwise fail only after training started (and after outputs were written)."""
    from transformers import SchedulerType

    tc = cfg.train
    try:
        SchedulerType(tc.lr_scheduler)
    except ValueError:
        known = ", ".join(s.value for s in SchedulerType)
        raise ConfigError(f"unknown scheduler {tc.lr_scheduler!r}; known: {known}", field="--lr_scheduler") from None
    if tc.metric_for_best == "avg":
        return
    parts = tc.metric_for_best.split("/")
    task = tasks.get(parts[0]) if len(parts) == 3 else None
    if (
        task is None
        or parts[1] not in [s.name for s in task.dev_splits()]
        or parts[2] not in (*task.metrics, *LOWER_IS_BETTER)
    ):
        choices = [f"{t.name}/{s.name}/{m}" for t in tasks.values() for s in t.dev_splits() for m in t.metrics]
        raise ConfigError(
            f"{tc.metric_for_best!r} is not 'avg' or TASK/SPLIT/METRIC of a trained task; one of {choices}",
            field="--metric_for_best",
        )


def prepare_output_dir(path: str) -> None:
    Path(path).mkdir(parents=True, exist_ok=True)


def build_trainer(cfg: RunConfig) -> Trainer:
    tc = cfg.train
    all_tasks = load_task_defs(tc.task_def)
    tasks = select_tasks(all_tasks, tc.tasks, tc.task_def)
    check_run_flags(cfg, tasks)
    regularizers = build_regularizers(cfg, tasks)
    raw = read_task_data(tasks, tc.data_dir, tc.max_train_samples, tc.max_eval_samples)
    dist_info, device = init_distributed(tc.device)
    set_seed(tc.seed)
    model, tokenizer = build_model(cfg, tasks)
    train, evals = tokenize_all(raw, tasks, tokenizer, cfg)
    model.to(device)
    ddp_model = None
    if dist_info.enabled:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )
    if dist_info.rank == 0:
        prepare_output_dir(tc.output_dir)
    tracker = RunTracker(tc.output_dir, enabled=dist_info.rank == 0)
    task_def_text = Path(tc.task_def).read_text(encoding="utf-8")
    return Trainer(
        cfg,
        model,
        tokenizer,
        tasks,
        train,
        evals,
        regularizers,
        task_def_text,
        device,
        tracker,
        ddp_model=ddp_model,
        rank=dist_info.rank,
        world_size=dist_info.world_size,
    )
