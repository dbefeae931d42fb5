"""User-facing errors: each names where the problem is and how to fix it."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user. The CLI prints the message (no traceback) and exits 2."""


class ConfigError(UserError):
    """A problem in a task definition, data file or flag.

    The message reads `<file>: task <task>: <field>: <problem>` with the parts that apply.
    """

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        task: str | None = None,
        field: str | None = None,
    ) -> None:
        where = [p for p in (file, f"task {task!r}" if task else None, field) if p]
        super().__init__(": ".join([*where, problem]))
        self.file, self.task, self.field, self.problem = file, task, field, problem
