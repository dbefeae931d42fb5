"""Graceful stop on SIGTERM / SIGINT: finish the current optimizer step, checkpoint, exit.

A scheduler's preemption (SIGTERM) or a Ctrl-C (SIGINT) sets a flag; the trainer checks it at
every optimizer-step boundary, writes a checkpoint and raises `Interrupted`, which the CLI turns
into a one-line message and the conventional exit status 128 + signal number (143 for SIGTERM,
130 for SIGINT), so a job script can tell "stopped, resumable" from "finished" (0).
A second SIGINT while the first is being handled stops at once (KeyboardInterrupt); so does a
SIGINT during start-up. The CLI then says what is on disk (`StoppedAtOnce`): checkpoints are
written atomically, so the newest complete one is intact whenever the stop lands.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

HANDLED = (signal.SIGTERM, signal.SIGINT)


class Interrupted(Exception):
    """Training stopped on a signal after writing a checkpoint."""

    def __init__(self, signum: int, checkpoint: str) -> None:
        self.signum, self.checkpoint = signum, checkpoint
        name = signal.Signals(signum).name
        super().__init__(
            f"received {name}: saved a checkpoint to {checkpoint}; rerun the same command to resume from it"
        )

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StoppedAtOnce(Exception):
    """Stopped by a KeyboardInterrupt (a second Ctrl-C, or one during start-up), with what is on disk."""

    def __init__(self, on_disk: str, signum: int = signal.SIGINT) -> None:
        self.signum = signum
        super().__init__(f"received {signal.Signals(signum).name}: stopped at once; {on_disk}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopOnSignal:
    """Context manager: while active, SIGTERM/SIGINT only set `requested` (the signal number)."""

    def __init__(self) -> None:
        self.requested: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: the user wants out now
        if self.requested is None:
            self.requested = signum
            again = "; press Ctrl-C again to stop at once" if signum == signal.SIGINT else ""
            name = signal.Signals(signum).name
            # os.write, not print: a handler may interrupt a print to the same stream
            os.write(2, f"\nreceived {name}: finishing this optimizer step, then saving a checkpoint{again}\n".encode())

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():  # handlers only install there
            for s in HANDLED:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()
