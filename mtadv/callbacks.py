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

The builder attaches the EMA teacher's callback (mtadv.teacher.TeacherCallback) and, only while
MTADV_FAULT is set, the reliability tests' fault injection (mtadv.faults.FaultInjection).
"""

from __future__ import annotations

from typing import Any

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
