"""Fault injection for the reliability tests; inert unless MTADV_FAULT is set.

    MTADV_FAULT="<fault>@<step>[,<fault>@<step>...]"

    kill_after_step@k   SIGKILL this process right after optimizer step k (before any save)
    kill_in_save@k      SIGKILL half-way through writing checkpoint-k (some files written)
    enospc_in_save@k    raise OSError(ENOSPC) half-way through writing checkpoint-k
    sigterm_after_step@k  send SIGTERM to this process right after optimizer step k
    nan_loss@k          the loss is NaN on every micro-step from optimizer step k (0-based) on
    nan_loss_once@k     the loss is NaN in optimizer step k (0-based) only

The trainer runs `after_step` as a callback (FaultInjection, attached by mtadv.build only while
the variable is set); `in_save` and `loss_is_poisoned` sit inside a checkpoint write and a
micro-step, where no callback event reaches. The tests use these to stop a real run at an exact point (a kill from outside lands anywhere,
which is also tested, but cannot be aimed). Nothing here runs when the variable is unset.
"""

from __future__ import annotations

import errno
import os
import signal

ENV = "MTADV_FAULT"


def _armed(fault: str) -> list[int]:
    """The steps at which `fault` is armed."""
    spec = os.environ.get(ENV, "")
    steps = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, step = item.partition("@")
        if name == fault:
            steps.append(int(step))
    return steps


def after_step(step: int) -> None:
    """Called after each optimizer step."""
    if not os.environ.get(ENV):
        return
    if step in _armed("kill_after_step"):
        os.kill(os.getpid(), signal.SIGKILL)
    if step in _armed("sigterm_after_step"):
        os.kill(os.getpid(), signal.SIGTERM)


def in_save(step: int) -> None:
    """Called in the middle of writing a training checkpoint (inside the atomic write)."""
    if not os.environ.get(ENV):
        return
    if step in _armed("kill_in_save"):
        os.kill(os.getpid(), signal.SIGKILL)
    if step in _armed("enospc_in_save"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def loss_is_poisoned(step: int) -> bool:
    """True when the loss at this step should be replaced by NaN."""
    if not os.environ.get(ENV):
        return False
    return any(step >= k for k in _armed("nan_loss")) or step in _armed("nan_loss_once")


def enabled() -> bool:
    return bool(os.environ.get(ENV))


class FaultInjection:
    """A trainer callback (mtadv.callbacks): kill or signal the run right after an exact step."""

    def on_step_end(self, trainer, logs: dict[str, float]) -> None:
        after_step(trainer.state.step)
