"""What the user sees: TensorBoard scalars, a JSONL history, results.json and a summary table."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from torch.utils.tensorboard import SummaryWriter

from mtadv.evaluate import TOP_CLASS_SHARE

if TYPE_CHECKING:  # mtadv.trainer imports this module
    from mtadv.trainer import TrainState

Results = dict[str, dict[str, dict[str, float]]]  # task -> split -> metric -> value
RobustResults = dict[str, dict[str, dict[str, dict[str, float]]]]  # task -> split -> attack -> metric -> value


class RunTracker:
    """Writes every scalar to TensorBoard (`<out>/tb`) and `<out>/history.jsonl`; rank 0 only."""

    def __init__(self, output_dir: str, enabled: bool = True, purge_step: int | None = None) -> None:
        self.enabled = enabled
        self.output_dir = output_dir
        self._purge_step = purge_step
        self._writer: SummaryWriter | None = None  # created at the first scalar: a run with nothing to log adds no file
        self._history = open(os.path.join(output_dir, "history.jsonl"), "a") if enabled else None

    @property
    def writer(self) -> SummaryWriter:
        if self._writer is None:
            self._writer = SummaryWriter(os.path.join(self.output_dir, "tb"), purge_step=self._purge_step)
        return self._writer

    def scalars(self, step: int, values: dict[str, float], kind: str = "train") -> None:
        if not self.enabled:
            return
        for tag, v in values.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self.writer.add_scalar(tag, v, step)
        self._history.write(json.dumps({"step": step, "kind": kind, **values}) + "\n")
        self._history.flush()

    def metrics(self, step: int, results: Results) -> None:
        flat = {
            f"dev/{t}/{s}/{m}": v for t, splits in results.items() for s, ms in splits.items() for m, v in ms.items()
        }
        self.scalars(step, flat, kind="eval")

    def write_results(self, payload: dict[str, Any]) -> None:
        if not self.enabled:
            return
        path = os.path.join(self.output_dir, "results.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=2)
        os.replace(tmp, path)

    def close(self) -> None:
        if self.enabled:
            if self._writer is not None:
                self._writer.close()
            self._history.close()


def format_results_table(results: Results, primary: dict[str, str] | None = None) -> str:
    """A readable table: one row per task and dev split, one column per metric."""
    rows = [(t, s, ms) for t, splits in results.items() for s, ms in splits.items()]
    if not rows:
        return "(no dev results)"
    metrics = sorted({m for _, _, ms in rows for m in ms}, key=lambda m: (m != "loss", m))
    tw, sw = max(10, *(len(t) for t, _, _ in rows)), max(16, *(len(s) for _, s, _ in rows))  # column widths
    mw = {m: max(10, len(m)) for m in metrics}
    head = f"{'task':<{tw}} {'split':<{sw}} " + " ".join(f"{m:>{mw[m]}}" for m in metrics)
    lines = [head, "-" * len(head)]
    for t, s, ms in rows:
        cells = " ".join(f"{ms[m]:>{mw[m]}.2f}" if m in ms else f"{'':>{mw[m]}}" for m in metrics)
        lines.append(f"{t:<{tw}} {s:<{sw}} {cells}")
    return "\n".join(lines)


# ---------------------------------------------------------------- results.json and the closing summary
def results_payload(
    state: TrainState, metric_for_best: str, output_dir: str, epochs_completed: int, truncated: dict[str, int]
) -> dict[str, Any]:
    """results.json: the best and the final evaluation, where best/ is, and the run's counters."""
    seconds = state.train_seconds  # summed over resumes, like the examples
    run = {
        "steps": state.step,
        "epochs_completed": epochs_completed,
        "seconds": round(seconds, 2),
        "train_examples_per_second": round(state.examples_seen / max(seconds, 1e-9), 2),
        "skipped_steps": state.skipped_steps,
        "truncated_examples": truncated,
    }
    best = {"metric": metric_for_best, "value": state.best_value, "step": state.best_step}
    return {
        "results": state.best_results,
        "final": state.last_results,
        "best": {**best, "checkpoint": f"{output_dir}/best"},
        "run": run,
    }


def robust_section(state: TrainState, settings: dict[str, Any]) -> dict[str, Any]:
    """results.json's "robust": --eval_attack's metrics at the best and the final evaluation."""
    return {"results": state.best_robust_results, "final": state.last_robust_results, "settings": settings}


def print_summary(
    payload: dict[str, Any], state: TrainState, strength_by_task: Mapping[str, Sequence[str]] | None = None
) -> None:
    best, run = payload["best"], payload["run"]
    value = best["value"] if best["value"] is not None else float("nan")
    print(f"\nBest checkpoint (step {best['step']}, {best['metric']} = {value:.2f}): {best['checkpoint']}")
    print(format_results_table(state.best_results))
    for warning in constant_prediction_warnings(state.best_results, strength_by_task):
        print(warning)
    if note := still_rising_note(best["step"], run["steps"], run["epochs_completed"]):
        print(note)
    if state.best_robust_results:
        print("under attack (--eval_attack), at the best checkpoint:")
        print(format_results_table(flatten_robust(state.best_robust_results)))
    print(
        f"{state.step} steps in {state.train_seconds:.0f}s ({run['train_examples_per_second']} train examples/s), "
        f"{state.skipped_steps} skipped steps"
    )


def constant_prediction_warnings(
    results: Results, strength_by_task: Mapping[str, Sequence[str]] | None = None
) -> list[str]:
    """A line per classification split on which every example got the same class (top_class_share 100).

    The advice depends on the task: a regularizer's strength is the usual cause when the task has one,
    so the line names that regularizer's strength settings (`strength_by_task`: task -> setting names,
    each method's `Regularizer.strength`); without one, too short a run or too small a step is."""
    strength_by_task = strength_by_task or {}
    plain = "or with a larger --learning_rate, and check that the labels vary"

    def advice(task: str) -> str:
        names = strength_by_task.get(task)
        return f"or give its regularizer a smaller strength ({', '.join(names)})" if names else plain

    return [
        f"warning: {task} {split}: every example got the same class (top_class_share 100), so the model ignores "
        f"its input: train longer, {advice(task)}"
        for task, splits in results.items()
        for split, ms in splits.items()
        if ms.get(TOP_CLASS_SHARE, 0.0) >= 100.0
    ]


def still_rising_note(best_step: int, last_step: int, epochs_completed: int) -> str:
    """A line when the best checkpoint is the last step of a run of two or more epochs.

    Ties keep the earlier checkpoint, so a best at the last step means the last evaluation beat every
    earlier one: the dev score was still rising when training stopped, and a longer run may score
    higher (and a regularizer that slows the fit will look worse than it would at convergence)."""
    if epochs_completed < 2 or best_step != last_step:
        return ""
    return (
        f"note: the best dev score came at the last step ({last_step}), above every earlier evaluation: "
        "it was still rising when training stopped, so more --epochs may score higher"
    )


def flatten_robust(robust: RobustResults) -> Results:
    """task -> split -> attack -> metrics as task -> "split/attack" -> metrics, for the results table."""
    return {t: {f"{s}/{a}": ms for s, at in sp.items() for a, ms in at.items()} for t, sp in robust.items()}
