"""The multi-task training loop.

One optimizer step, top to bottom:
    for each of grad_accum micro-batches (each from one task):
        clean forward on the word embeddings -> task loss
        + every active regularizer's term (SMART, FGM, EMA teacher, ...)
        one backward()
    unscale -> clip -> optimizer step -> scheduler step -> regularizer hooks (EMA update)
    log -> evaluate / checkpoint when due -> callbacks' on_step_end

Public surface: train() runs it all; batches(epoch, start) yields the grad-accumulation groups,
train_step(group) takes one optimizer step over one, micro_step(task, batch, n) is its forward and
backward; state_dict() / load_state_dict() are what mtadv.resume saves for exact resume. What runs
beside the loop is a callback (mtadv.callbacks: on_step_end, on_evaluate, on_save, on_train_end),
e.g. the EMA teacher's evaluation and best/teacher/ (mtadv.callbacks.TeacherCallback). The optimizer
comes from mtadv.build.build_optimizer; results.json and the summary from mtadv.tracking.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mtadv import distributed, faults
from mtadv.adversarial import Regularizer, StepContext
from mtadv.adversarial.perturb import RngState
from mtadv.adversarial.spaces import get_space, task_space
from mtadv.attacks import attack_names, build_attack
from mtadv.attacks.evaluate import evaluate_under_attack
from mtadv.callbacks import fire
from mtadv.checkpoint import save_checkpoint
from mtadv.config import RunConfig
from mtadv.data_utils.plan import PlanDataset, model_rows
from mtadv.data_utils.sampler import MultiTaskSampler
from mtadv.data_utils.tokenize import TokenizedSplit, default_cache_dir
from mtadv.errors import UserError
from mtadv.losses import TASK_LOSSES
from mtadv.model import MultiTaskModel
from mtadv.precision import autocast_dtype
from mtadv.resume import chain_writers, rank_local_state, unique_regularizers, write_training_state
from mtadv.run_dir import latest_checkpoint, rotate_checkpoints
from mtadv.signals import Interrupted, StopOnSignal
from mtadv.taskdef import TaskDef, lower_is_better
from mtadv.tasks import EvalRequest, pipeline_for
from mtadv.tracking import Results, RobustResults, RunTracker, print_summary, results_payload, robust_section


@dataclass
class TrainState:
    """Counters that define where training is; saved for resume."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0
    batch_in_epoch: int = 0  # global batches of this epoch already consumed
    best_value: float | None = None
    best_step: int = -1
    best_results: Results = field(default_factory=dict)
    skipped_steps: int = 0  # non-finite loss or gradients
    best_teacher_results: Results = field(default_factory=dict)  # --eval_with_teacher, at the best step
    examples_seen: int = 0
    consecutive_skipped: int = 0  # skipped steps in a row; --max_skipped_steps stops the run
    last_eval_step: int = -1
    last_results: Results = field(default_factory=dict)  # the latest evaluation ('final' in results.json)
    last_teacher_results: Results = field(default_factory=dict)
    best_robust_results: RobustResults = field(default_factory=dict)  # --eval_attack, at the best step
    last_robust_results: RobustResults = field(default_factory=dict)
    train_seconds: float = 0.0  # wall-clock seconds of training up to this state, summed over resumes


class Trainer:
    def __init__(
        self,
        cfg: RunConfig,
        model: MultiTaskModel,
        tokenizer,
        tasks: dict[str, TaskDef],
        train_splits: dict[str, TokenizedSplit],
        eval_splits: dict[tuple[str, str], TokenizedSplit],
        regularizers: dict[str, list[Regularizer]],
        task_def_text: str,
        device: torch.device,
        tracker: RunTracker,
        ddp_model: nn.Module | None = None,
        rank: int = 0,
        world_size: int = 1,
        callbacks: list | None = None,
        *,
        make_optimizer: Callable[[int], tuple[torch.optim.Optimizer, LRScheduler]],
    ) -> None:
        self.cfg, self.tc = cfg, cfg.train
        self.model, self.tokenizer, self.tasks = model, tokenizer, tasks
        self.forward_model = ddp_model or model  # the clean forward goes through DDP when distributed
        self.train_splits, self.eval_splits = train_splits, eval_splits
        self.regularizers, self.task_def_text = regularizers, task_def_text
        self.device, self.tracker, self.rank, self.world_size = device, tracker, rank, world_size
        self.collators = {t: pipeline_for(task).collator(task, tokenizer, cfg) for t, task in tasks.items()}
        self.rows = {t: model_rows(s) for t, s in train_splits.items()}
        self.sampler = MultiTaskSampler(
            {t: s.lengths() for t, s in train_splits.items()},
            self.tc.batch_size,
            self.tc.sampling,
            self.tc.temperature,
            self.tc.seed,
            self.tc.group_by_length,
            world_size,
            rank,
        )
        self.batches_per_epoch = len(self.sampler.epoch_plan(0))
        self.groups_per_epoch = math.ceil(self.batches_per_epoch / self.tc.grad_accum)
        self.total_steps = self.tc.max_steps or max(1, math.ceil(self.tc.epochs * self.groups_per_epoch))
        self.optimizer, self.scheduler = make_optimizer(self.total_steps)  # mtadv.build.build_optimizer
        self.autocast_dtype = autocast_dtype(self.tc.precision, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.autocast_dtype == torch.float16)
        self.state = TrainState()
        self._session_start = (time.perf_counter(), 0.0)  # (clock, train_seconds) when train() started
        self.loss_fns = {t: TASK_LOSSES.get(task.loss) for t, task in tasks.items()}
        self.spaces = {t: get_space(task_space(regularizers.get(t, []))) for t in tasks}
        self.callbacks: list = list(callbacks or [])  # mtadv.callbacks: step end, evaluate, save, train end

    # ---------------------------------------------------------------- the loop
    def train(self) -> dict[str, Any]:
        # from_pretrained returns the encoder in eval mode: without this, encoder dropout stayed off
        # until the first evaluation switched the model back to train mode
        self.model.train()
        if self._already_finished():  # a rerun of a finished command: its results stay as they are
            return self._finished_results()
        bar = self._progress_bar()
        self._session_start = (time.perf_counter(), self.state.train_seconds)  # seconds accumulate across resumes
        # SIGTERM/SIGINT: checkpoint at the next step boundary, then stop; the bar ends its line on errors
        with StopOnSignal() as stop, bar:
            while self.state.step < self.total_steps:
                for group in self.batches(self.state.epoch, self.state.batch_in_epoch):
                    first_step = self.state.step + 1
                    counts = self.replay_counts(group)  # per micro-batch: m for a task whose active method replays
                    for k in range(max(counts)):  # replay k trains the batches whose task still replays
                        logs = self.train_step([mb for mb, n in zip(group, counts) if n > k])
                        self.state.step += 1
                        bar.update(1)
                        self._after_step(logs, bar)
                        if self.state.step >= self.total_steps:
                            break
                    self.state.batch_in_epoch += len(group)
                    self._at_group_end(first_step, stop)  # mid-epoch checkpoints happen only here
                    if self.state.step >= self.total_steps:
                        break
                else:
                    self.state.epoch, self.state.batch_in_epoch = self.state.epoch + 1, 0
                    if not self.tc.eval_steps:
                        self.evaluate_and_keep_best()
                    if not self.tc.save_steps:
                        self.save_training_checkpoint()
            bar.close()
            if self.state.last_eval_step != self.state.step:
                self.evaluate_and_keep_best()
            self.save_training_checkpoint()  # the final state: a finished run resumes straight to its results
        return self.finish()

    def replay_counts(self, group: list[tuple[str, dict[str, Tensor]]]) -> list[int]:
        """Optimizer steps for each micro-batch of a group: the largest `replays` among its task's regularizers
        active at the group's first step (FreeAT's m), else 1. Only those tasks' batches are replayed: a plain
        task's batch in the same grad-accumulation group is trained once, in the group's first step. The step
        budget stays epochs × groups and the tasks share one epoch plan, so replayed batches shorten every
        task's passes to budget / (steps per pass): epochs/m when every task replays, and nothing is lost
        while no replaying method is active. Every rank's batch i is of the same task, so ranks agree."""
        s = self.state
        regs = self.regularizers
        return [max([r.replays for r in regs.get(t, []) if r.active(s.step, s.epoch)] or [1]) for t, _ in group]

    def _at_group_end(self, first_step: int, stop: StopOnSignal) -> None:
        """After a whole grad-accumulation group and its replays: checkpoint if due; stop on a signal."""
        every = self.tc.save_steps
        due = every > 0 and self.state.step < self.total_steps  # the final checkpoint comes after training
        due = due and any(s % every == 0 for s in range(first_step, self.state.step + 1))
        stopping = distributed.any_rank(stop.requested is not None)  # every rank stops at the same step
        path = self.save_training_checkpoint() if due or stopping else None
        if stopping:
            raise Interrupted(stop.requested or signal.SIGTERM, path)

    def batches(self, epoch: int, start: int):
        """Yield lists of grad_accum (task, batch) pairs of `epoch` from global batch `start` on, collated by the
        DataLoader and on the trainer's device."""
        plan = list(self.sampler.iterate(epoch, start))
        loader = DataLoader(
            PlanDataset(plan, self.rows, self.collators),
            batch_size=None,
            shuffle=False,
            num_workers=self.tc.num_workers,
            # its own generator: creating the iterator then draws no number from the global torch RNG,
            # so an epoch resumed mid-way sees the same random stream as an uninterrupted one
            generator=torch.Generator().manual_seed(self.tc.seed + epoch),
        )
        group: list[tuple[str, dict[str, Tensor]]] = []
        for task, batch in loader:
            group.append((task, {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}))
            if len(group) == self.tc.grad_accum:
                yield group
                group = []
        if group:
            yield group

    def train_step(self, group: list[tuple[str, dict[str, Tensor]]]) -> dict[str, float]:
        """One optimizer step over a grad-accumulation group of (task, batch): its logs (mean per key)."""
        self.optimizer.zero_grad(set_to_none=True)
        logs: dict[str, float] = {}
        counts: dict[str, int] = {}  # a task's keys are averaged over that task's micro-steps only
        finite = True
        for i, (task, batch) in enumerate(group):
            with self._no_sync(last=i == len(group) - 1):
                step_logs, ok = self.micro_step(task, batch, len(group))
            finite &= ok
            for k, v in step_logs.items():
                logs[k], counts[k] = logs.get(k, 0.0) + v, counts.get(k, 0) + 1
        logs = {k: v / counts[k] for k, v in logs.items()}
        finite = distributed.all_ranks(finite)  # ranks skip together or not at all
        self.scaler.unscale_(self.optimizer)
        grad_norm = self._clip()
        if finite and math.isfinite(grad_norm):
            self.state.consecutive_skipped = 0
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            for reg in self.unique_regularizers():
                reg.on_optimizer_step(self.model)
        else:
            self.state.skipped_steps += 1
            self.state.consecutive_skipped += 1
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.update()
            self._stop_if_diverged()
        logs.update(
            {
                "train/grad_norm": grad_norm,
                "train/lr": self.scheduler.get_last_lr()[0],
                "train/skipped_steps": float(self.state.skipped_steps),
            }
        )
        return logs

    def micro_step(self, task: str, batch: dict[str, Tensor], n_micro: int) -> tuple[dict[str, float], bool]:
        """Forward, task loss, regularizer terms and the micro-step's single backward."""
        tdef = self.tasks[task]
        rng = RngState.capture(self.device)  # dropout masks of the clean forward, for replay
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            # embeds: (B, T, H) the tensor the task's methods perturb; logits: (B, C) or (B,)
            embeds, logits, space_scale = self.spaces[task].clean_forward(self.forward_model, self.model, batch, task)
            task_loss = self.loss_fns[task](logits, batch["labels"])
            active = [r for r in self.regularizers.get(task, []) if r.active(self.state.step, self.state.epoch)]
            # a method may train on its own (adversarial) loss instead of the clean one: replaces_task_loss
            replaced = any(r.replaces_task_loss for r in active)
            loss = torch.zeros_like(task_loss) if replaced else task_loss
            logs = {f"train/{task}/loss": task_loss.item()}
            ctx = StepContext(
                self.model, tdef, batch, embeds, logits, task_loss, rng, self.state.step, self.state.epoch
            )
            ctx.space, ctx.space_scale = self.spaces[task].name, space_scale
            ctx.grad_scale = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0  # for inner gradients
            for reg in active:
                reg_loss, reg_logs = reg.loss(ctx)
                loss = loss + reg_loss
                logs.update({f"train/{task}/{k}": v for k, v in reg_logs.items()})
        if faults.loss_is_poisoned(self.state.step):  # tests: a NaN loss from a given step on
            loss = loss * float("nan")
        logs[f"train/{task}/total_loss"] = loss.item()
        self.state.examples_seen += batch["input_ids"].shape[0] * self.world_size
        finite = bool(torch.isfinite(loss))
        if not finite and self.world_size == 1:
            return logs, False
        # Under DDP every rank must run its backward (the gradient all-reduce); a NaN on one rank then
        # reaches every rank's gradients and the step is skipped everywhere.
        self.scaler.scale(loss / n_micro).backward()
        return logs, finite

    def _stop_if_diverged(self) -> None:
        limit, n = self.tc.max_skipped_steps, self.state.consecutive_skipped
        if limit <= 0 or n < limit:
            return
        last = latest_checkpoint(self.tracker.output_dir)
        raise UserError(
            f"training stopped at step {self.state.step + 1}: the loss or gradients were NaN/inf in {n} optimizer "
            f"steps in a row (--max_skipped_steps {limit}); the weights were left at the last good step"
            + (f" and the newest checkpoint, {last}, is intact" if last else "")
            + ". Lower --learning_rate, check the training data for bad labels, or use --precision fp32"
        )

    # ---------------------------------------------------------------- helpers
    def _clip(self) -> float:
        params = [p for p in self.model.parameters() if p.grad is not None]
        if not params:
            return 0.0
        max_norm = self.tc.max_grad_norm if self.tc.max_grad_norm > 0 else float("inf")
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))

    def _no_sync(self, last: bool):
        if self.forward_model is not self.model and not last:
            return self.forward_model.no_sync()
        return contextlib.nullcontext()

    def unique_regularizers(self) -> list[Regularizer]:
        """Each regularizer object once: tasks share some (the EMA teacher)."""
        return unique_regularizers(self.regularizers)[0]

    # ---------------------------------------------------------------- state for exact resume
    def state_dict(self) -> dict[str, Any]:
        """Where training is, bar the weights and RNG streams: optimizer, scheduler, GradScaler, TrainState
        (as a dict) and every regularizer's state; mtadv.resume writes it into checkpoint-<step>/."""
        unique, layout = unique_regularizers(self.regularizers)
        return {
            "total_steps": self.total_steps,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "state": dataclasses.asdict(self.state),
            "regularizers": {
                "states": [r.state_dict() for r in unique],
                "tasks": layout,
                "names": [r.name for r in unique],
            },
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """The inverse of state_dict(); TrainState fields the dict lacks keep their defaults."""
        self.optimizer.load_state_dict(sd["optimizer"])
        self.scheduler.load_state_dict(sd["scheduler"])
        self.scaler.load_state_dict(sd["scaler"])
        unique, layout = unique_regularizers(self.regularizers)
        saved = sd["regularizers"]
        if layout != saved["tasks"]:
            raise UserError(
                f"the checkpoint's regularizers {saved['tasks']} (task: regularizer indices) differ from this "
                f"run's {layout}; resume with the original --adv settings and task definitions"
            )
        for reg, state in zip(unique, saved["states"]):
            reg.load_state_dict(state)
        known = {f.name for f in dataclasses.fields(self.state)}
        self.state = dataclasses.replace(self.state, **{k: v for k, v in sd["state"].items() if k in known})

    def _progress_bar(self):
        return tqdm(
            total=self.total_steps, initial=self.state.step, desc="train", disable=self.rank != 0, dynamic_ncols=True
        )

    def _after_step(self, logs: dict[str, float], bar) -> None:
        step = self.state.step
        if step % self.tc.log_steps == 0 or step == 1:
            self.tracker.scalars(step, logs)
            losses = [v for k, v in logs.items() if k.endswith("/loss")]
            if losses:
                bar.set_postfix(loss=f"{sum(losses) / len(losses):.4f}", lr=f"{logs['train/lr']:.2e}")
        if self.tc.eval_steps and step % self.tc.eval_steps == 0:
            self.evaluate_and_keep_best()
        fire(self.callbacks, "on_step_end", self, logs)

    # ---------------------------------------------------------------- evaluation and checkpoints
    def evaluate(self, model: nn.Module | None = None) -> Results:
        model = model or self.model
        results: Results = {}
        request = EvalRequest(
            self.tokenizer, self.tc.eval_batch_size, self.device, self.autocast_dtype, self.rank, self.world_size
        )
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):  # evaluating never moves the training RNG streams
            for (task, split), data in self.eval_splits.items():
                tdef = self.tasks[task]  # by task type: labeled metrics, or MLM loss/perplexity (mtadv.tasks)
                results.setdefault(task, {})[split] = pipeline_for(tdef).evaluate(model, tdef, data, request)
        return results

    def selection_value(self, results: Results) -> float | None:
        """The number the best checkpoint is chosen by (higher is better after sign flip)."""
        key = self.tc.metric_for_best
        if key == "avg":
            return _average_primary(results, self.tasks)
        task, split, metric = key.split("/")
        value = results.get(task, {}).get(split, {}).get(metric)
        return None if value is None else (-value if metric in lower_is_better() else value)

    def evaluate_and_keep_best(self) -> None:
        """Evaluate on every dev split, log, and write best/ when the selection metric improved."""
        results = self.evaluate()
        self.state.last_eval_step = self.state.step
        self.tracker.metrics(self.state.step, results)
        fire(self.callbacks, "on_evaluate", self, results)  # the teacher's callback sets last_teacher_results
        robust = self.evaluate_robustness()
        s, value = self.state, self.selection_value(results)
        improved = value is not None and (s.best_value is None or value > s.best_value)
        if improved or (value is None and not s.best_results):
            s.best_value, s.best_step, s.best_results = value, s.step, results
            s.best_teacher_results, s.best_robust_results = s.last_teacher_results, robust
            self.save("best")
        s.last_results, s.last_robust_results = results, robust

    def evaluate_robustness(self) -> RobustResults:
        """--eval_attack: each labeled dev split's metrics under each attack, logged as
        robust/<task>/<split>/<attack>/<metric>; {} without attacks."""
        names = attack_names(self.tc.eval_attack)
        if not names:
            return {}
        out: RobustResults = {}
        request = EvalRequest(
            self.tokenizer, self.tc.eval_batch_size, self.device, self.autocast_dtype, self.rank, self.world_size
        )
        cache = self.tc.cache_dir or default_cache_dir()
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):  # like evaluate(): the training RNG streams never move
            for (task, split), data in self.eval_splits.items():
                tdef = self.tasks[task]
                if tdef.task_type.label_kind is None:  # masked-LM tasks have no labels to attack
                    continue
                for name in names:
                    attack = build_attack(name, self.cfg.attack)
                    metrics = evaluate_under_attack(self.model, tdef, data, request, attack, self.tc.max_seq_len, cache)
                    out.setdefault(task, {}).setdefault(split, {})[name] = metrics
        flat = {f"robust/{t}/{s}/{a}/{m}": v for t, sp in out.items() for s, at in sp.items() for a, ms in at.items()
                for m, v in ms.items()}  # fmt: skip
        self.tracker.scalars(self.state.step, flat, kind="eval")
        return out

    def teacher_model(self) -> nn.Module | None:
        """The EMA teacher, if a regularizer keeps one and it has started."""
        return next((r.teacher for r in self.unique_regularizers() if r.teacher is not None), None)

    def save_training_checkpoint(self) -> str:
        """checkpoint-<step>/: the model plus training_state/ for exact resume. Every rank calls this."""
        states = distributed.gather_to_main(rank_local_state(self))  # RNG etc. of every rank, on rank 0
        name = f"checkpoint-{self.state.step}"
        if self.rank == 0:
            self.save(name, extra=lambda tmp: write_training_state(tmp, self, states))
            rotate_checkpoints(Path(self.tracker.output_dir), self.tc.save_total_limit)
        return f"{self.tracker.output_dir}/{name}"

    def save(self, name: str, extra: Callable[[Path], None] | None = None) -> None:
        """Write <output_dir>/<name> atomically (rank 0); a full disk is a clear error, not a traceback."""
        if self.rank != 0:
            return
        try:
            self._save(name, extra)
        except OSError as e:
            last = latest_checkpoint(self.tracker.output_dir)
            raise UserError(
                f"could not write {self.tracker.output_dir}/{name}: {e}. "
                + (f"The previous checkpoint {last} is intact; " if last else "No earlier checkpoint exists; ")
                + "free disk space (or fix permissions) and rerun the same command to resume"
            ) from None

    def _save(self, name: str, extra: Callable[[Path], None] | None) -> None:
        self.state.train_seconds = self._elapsed()  # what a resume continues counting from

        def callbacks(tmp: Path) -> None:  # e.g. best/teacher/ (mtadv.callbacks.TeacherCallback)
            fire(self.callbacks, "on_save", self, tmp, extra is not None)

        save_checkpoint(
            f"{self.tracker.output_dir}/{name}",
            self.model,
            self.tokenizer,
            self.task_def_text,
            self.cfg.to_dict(),
            extra=chain_writers(callbacks, extra),
        )

    def _elapsed(self) -> float:
        """Training seconds so far: those of earlier sessions (from the checkpoint) plus this one's."""
        clock, before = self._session_start
        return before + time.perf_counter() - clock

    def _results_path(self) -> Path:
        return Path(self.tracker.output_dir) / "results.json"

    def _already_finished(self) -> bool:
        """Resumed from the final checkpoint, with its results.json written: nothing is left to do."""
        done = self.state.step >= self.total_steps and self._results_path().is_file()
        return distributed.all_ranks(done)

    def _finished_results(self) -> dict[str, Any]:
        if self.rank == 0:
            print(
                f"{self.tracker.output_dir} holds this run, finished ({self.state.step} of {self.total_steps} steps): "
                "results.json, best/ and the checkpoints are left as they are. To train again, pass a new "
                "--output_dir or --overwrite_output_dir"
            )
        return json.loads(self._results_path().read_text())

    def finish(self) -> dict[str, Any]:
        """Write results.json and print the summary; returns the results.json payload."""
        s = self.state
        s.train_seconds = self._elapsed()
        # a run that ends on an epoch's last batch stops before the epoch counter moves on
        epochs_completed = s.epoch + int(s.batch_in_epoch >= self.batches_per_epoch)
        truncated = {t: sp.n_truncated for t, sp in self.train_splits.items()}
        payload = results_payload(s, self.tc.metric_for_best, self.tracker.output_dir, epochs_completed, truncated)
        fire(self.callbacks, "on_train_end", self, payload)  # the teacher's section
        if s.best_robust_results or s.last_robust_results:
            payload["robust"] = robust_section(s, dataclasses.asdict(self.cfg.attack))
        self.tracker.write_results(payload)
        if self.rank == 0:
            print_summary(payload, s, strength_by_task=self.strength_by_task())
        return payload

    def strength_by_task(self) -> dict[str, list[str]]:
        """Task -> the strength settings of its regularizers, for the constant-prediction warning."""
        return {t: _strength_names(regs) for t, regs in self.regularizers.items() if regs}


def _strength_names(regularizers: list[Regularizer]) -> list[str]:
    """The strength settings of a task's regularizers, in order, each once (SMART + teacher: ε, λ, μ)."""
    return list(dict.fromkeys(name for r in regularizers for name in r.strength))


def _average_primary(results: Results, tasks: dict[str, TaskDef]) -> float | None:
    """Mean primary dev metric of the higher-is-better tasks; auxiliary MLM tasks (perplexity) do not
    enter it. When every task is lower-is-better (an MLM-only run), minus their mean."""
    prim = [(tasks[t].primary_metric, ms[tasks[t].primary_metric]) for t, sp in results.items() for ms in sp.values()]
    lower_better = lower_is_better()
    higher = [v for m, v in prim if m not in lower_better]
    lower = [v for m, v in prim if m in lower_better]
    if higher or lower:
        return sum(higher) / len(higher) if higher else -sum(lower) / len(lower)
    return None
