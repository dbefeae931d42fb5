"""Trainer callbacks: what runs beside the loop, at a few events, instead of being wired into it.

A callback is any object with some of these methods (Lightning's and the transformers Trainer's
callback events); the trainer calls those it has, in list order (`Trainer.callbacks`):

    on_step_end(trainer, logs)          after each optimizer step, its logging and any evaluation due
    on_evaluate(trainer, results)       after each dev evaluation, before the best checkpoint is chosen
    on_save(trainer, directory, training)
                                        inside a checkpoint's atomic write: `directory` is the folder
                                        being assembled; `training` is True for checkpoint-<step>/
                                        (with training_state/), False for best/
    on_train_end(trainer, payload)      before results.json is written: a callback may add its section

The builder attaches the EMA teacher's callback (TeacherCallback, below) and, only while
MTADV_FAULT is set, the reliability tests' fault injection (mtadv.faults.FaultInjection).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtadv.checkpoint import TEACHER_DIR, save_checkpoint

EVENTS = ("on_step_end", "on_evaluate", "on_save", "on_train_end")


class Callback:
    """Optional base class: every event does nothing."""

    def on_step_end(self, trainer, logs: dict[str, float]) -> None: ...

    def on_evaluate(self, trainer, results: dict) -> None: ...

    def on_save(self, trainer, directory, training: bool) -> None: ...

    def on_train_end(self, trainer, payload: dict[str, Any]) -> None: ...


def fire(callbacks: list, event: str, *args: Any) -> None:
    """Call `event` on each callback that has it."""
    assert event in EVENTS, event
    for cb in callbacks:
        method = getattr(cb, event, None)
        if method is not None:
            method(*args)


class TeacherCallback:
    """The EMA teacher (mtadv.adversarial.teacher) beside the loop: --eval_with_teacher's dev metrics at each
    evaluation (dev_teacher/<task>/<split>/<metric>, TrainState.last/best_teacher_results and
    results.json's "teacher"), and best/teacher/, a complete checkpoint of its own. A training
    checkpoint stores the teacher once, in its regularizer state (predict.py --use_teacher reads it)."""

    def __init__(self, eval_with_teacher: bool) -> None:
        self.eval_with_teacher = eval_with_teacher

    def on_evaluate(self, trainer, results: dict) -> None:
        teacher = trainer.teacher_model()
        out = trainer.evaluate(teacher) if self.eval_with_teacher and teacher is not None else {}
        if out:
            flat = {
                f"dev_teacher/{t}/{s}/{m}": v for t, sp in out.items() for s, ms in sp.items() for m, v in ms.items()
            }
            trainer.tracker.scalars(trainer.state.step, flat, kind="eval")
        trainer.state.last_teacher_results = out

    def on_save(self, trainer, directory: Path, training: bool) -> None:
        teacher = trainer.teacher_model()
        if teacher is not None and not training:
            cfg = trainer.cfg.to_dict()
            save_checkpoint(directory / TEACHER_DIR, teacher, trainer.tokenizer, trainer.task_def_text, cfg)

    def on_train_end(self, trainer, payload: dict[str, Any]) -> None:
        if self.eval_with_teacher:
            payload["teacher"] = {
                "results": trainer.state.best_teacher_results,
                "final": trainer.state.last_teacher_results,
                "checkpoint": f"{trainer.tracker.output_dir}/best/{TEACHER_DIR}",
            }
