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
from transformers import get_scheduler, set_seed

from mtadv import distributed, faults, run_dir
from mtadv.adversarial import build_regularizers
from mtadv.adversarial.teacher import BregmanTeacher
from mtadv.bundled import check_model_package
from mtadv.callbacks import TeacherCallback
from mtadv.checkpoint import load_encoder, load_heads_into, resolve_model_path
from mtadv.config import RunConfig, TrainConfig, check_config
from mtadv.data_utils.tokenize import TokenizedSplit, default_cache_dir
from mtadv.errors import ConfigError
from mtadv.model import MultiTaskModel
from mtadv.resume import load_training_state
from mtadv.taskdef import TaskDef, load_task_defs, lower_is_better, select_tasks
from mtadv.tasks import pipeline_for
from mtadv.tracking import RunTracker
from mtadv.trainer import Trainer


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


def read_task_data(
    tasks: dict[str, TaskDef], data_dir: str, max_train: int, max_eval: int, cfg: RunConfig | None = None
) -> RawData:
    """Read and validate the train and dev splits of every selected task (by its type's pipeline)."""
    cfg = cfg or RunConfig()
    train, evals = {}, {}
    for name, task in tasks.items():
        if "train" not in task.splits:
            raise ConfigError(
                "has no train split; add one or leave the task out of --tasks",
                file=task.source_file,
                task=name,
                field="splits.train",
            )
        read = pipeline_for(task).read
        train[name] = _cap(read(task, "train", data_dir, cfg), max_train)
        for split in task.dev_splits():
            evals[(name, split.name)] = _cap(read(task, split.name, data_dir, cfg), max_eval)
    return RawData(train, evals)


def _cap(ds: datasets.Dataset, n: int) -> datasets.Dataset:
    return ds.select(range(min(n, len(ds)))) if n else ds


def tokenize_all(raw: RawData, tasks: dict[str, TaskDef], tokenizer, cfg: RunConfig):
    tc = cfg.train
    cache = tc.cache_dir or default_cache_dir()

    def tok(task: str, split: str, ds: datasets.Dataset) -> TokenizedSplit:
        return pipeline_for(tasks[task]).tokenize(ds, tasks[task], split, tokenizer, cfg, cache)

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


def build_model(cfg: RunConfig, tasks: dict[str, TaskDef], weights_from: Path | None = None):
    """The model from --init_checkpoint, or, when resuming, from the checkpoint being resumed."""
    source = str(weights_from) if weights_from else cfg.train.init_checkpoint
    check_model_package(source, TrainConfig().init_checkpoint)  # the default needs the demo extra: say so
    encoder, tokenizer = load_encoder(source, cfg.train.trust_remote_code)
    check_seq_len(cfg.train.max_seq_len, encoder.config, source)
    model = MultiTaskModel(encoder, tasks, head_dropout=cfg.train.head_dropout)
    path = resolve_model_path(source)
    if os.path.isdir(path):
        loaded = load_heads_into(model, path)  # continuing from an mtadv checkpoint keeps its heads
        missing = sorted(set(model.heads) - set(loaded))
        if weights_from and missing:
            raise ConfigError(f"has no weights for head(s) {missing}; it belongs to another run", file=source)
    return model, tokenizer


def position_limit(config) -> int | None:
    """Longest input the encoder's position embeddings cover (None: no learned limit, e.g. relative).

    RoBERTa-style models offset positions past the padding index, so 514 embeddings cover 512 tokens.
    """
    limit = getattr(config, "max_position_embeddings", None)
    if not limit or getattr(config, "position_embedding_type", "absolute") != "absolute":
        return None
    if config.model_type in ("roberta", "xlm-roberta", "camembert", "longformer") and config.pad_token_id is not None:
        limit -= config.pad_token_id + 1
    return limit


def check_seq_len(max_seq_len: int, config, source: str) -> None:
    """Longer inputs would index past the position table mid-run (an IndexError deep in the encoder)."""
    limit = position_limit(config)
    if limit is not None and max_seq_len > limit:
        raise ConfigError(
            f"--max_seq_len {max_seq_len} is longer than this encoder's {limit} positions; use --max_seq_len {limit} "
            "or less",
            file=source,
            field="--max_seq_len",
        )


def report_truncation(train: dict[str, TokenizedSplit], max_seq_len: int) -> None:
    """Long inputs are cut to --max_seq_len, not rejected; say how many (results.json has the counts)."""
    for task, split in train.items():
        if split.n_truncated:
            print(
                f"note: task {task!r}: {split.n_truncated} of {len(split.data)} training examples are longer "
                f"than --max_seq_len {max_seq_len} and were truncated (run.truncated_examples in results.json)"
            )


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
        or parts[2] not in (*task.metrics, *lower_is_better())
    ):
        choices = [f"{t.name}/{s.name}/{m}" for t in tasks.values() for s in t.dev_splits() for m in t.metrics]
        raise ConfigError(
            f"{tc.metric_for_best!r} is not 'avg' or TASK/SPLIT/METRIC of a trained task; one of {choices}",
            field="--metric_for_best",
        )


def build_optimizer(
    model: torch.nn.Module, tc: TrainConfig, total_steps: int
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW without weight decay on biases and LayerNorm weights (1-D parameters), and the LR schedule
    (--lr_scheduler, warmup --warmup_ratio of the run's optimizer steps)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": tc.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=tc.learning_rate)
    warmup = int(tc.warmup_ratio * total_steps)
    scheduler = get_scheduler(tc.lr_scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
    return optimizer, scheduler


def build_callbacks(cfg: RunConfig, regularizers: dict[str, list]) -> list:
    """The trainer's callbacks (mtadv.callbacks): the EMA teacher's, when there is one (or its evaluation
    is asked for), and the reliability tests' fault injection while MTADV_FAULT is set."""
    callbacks: list = []
    if cfg.teacher.eval_with_teacher or any(isinstance(r, BregmanTeacher) for rs in regularizers.values() for r in rs):
        callbacks.append(TeacherCallback(cfg.teacher.eval_with_teacher))
    if faults.enabled():
        callbacks.append(faults.FaultInjection())
    return callbacks


def build_trainer(cfg: RunConfig) -> Trainer:
    cfg = check_config(cfg)  # every flag's range; --tasks stripped, --data_dir absolute
    tc = cfg.train
    all_tasks = load_task_defs(tc.task_def)
    tasks = select_tasks(all_tasks, tc.tasks, tc.task_def)
    check_run_flags(cfg, tasks)
    regularizers = build_regularizers(cfg, tasks)
    raw = read_task_data(tasks, tc.data_dir, tc.max_train_samples, tc.max_eval_samples, cfg)
    resume_from, clear = run_dir.plan_output_dir(cfg, list(tasks))  # a different run there: error, nothing written
    dist_info, device = init_distributed(tc.device)
    set_seed(tc.seed)
    model, tokenizer = build_model(cfg, tasks, weights_from=resume_from)
    train, evals = tokenize_all(raw, tasks, tokenizer, cfg)
    if dist_info.rank == 0:
        report_truncation(train, tc.max_seq_len)
    model.to(device)
    ddp_model = None
    if dist_info.enabled:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )
    resume_step = run_dir.checkpoint_step(resume_from) if resume_from else None
    if dist_info.rank == 0:
        identity = run_dir.run_identity(cfg, list(tasks))
        run_dir.prepare_output_dir(Path(tc.output_dir), identity, clear, resume_from)
    distributed.barrier()
    purge = None if resume_step is None else resume_step + 1  # TensorBoard drops events logged after it
    tracker = RunTracker(tc.output_dir, enabled=dist_info.rank == 0, purge_step=purge)
    task_def_text = Path(tc.task_def).read_text(encoding="utf-8")
    trainer = Trainer(
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
        callbacks=build_callbacks(cfg, regularizers),
        make_optimizer=lambda total_steps: build_optimizer(model, tc, total_steps),
    )
    if resume_from is not None:
        load_training_state(trainer, resume_from)
        if dist_info.rank == 0 and trainer.state.step < trainer.total_steps:  # a finished run says so in train()
            print(f"resuming from {resume_from} (step {trainer.state.step} of {trainer.total_steps})")
    return trainer
