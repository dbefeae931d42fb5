"""Helpers for the reliability tests: tiny real training runs, in-process or in a forked child.

A forked child is a real process (SIGKILL kills it and only it) that starts in milliseconds,
because it inherits the test process's imports; it runs exactly what `python train.py` runs.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from mtadv.faults import ENV as FAULT_ENV
from mtadv.run_dir import latest_checkpoint

REPO = Path(__file__).resolve().parent.parent


def train_args(tiny_encoder: Path, out: Path, *extra: str, tasks: str = "rte,stsb") -> list[str]:
    """A tiny two-task run (classification + regression): 3 batches per task, 6 steps per epoch."""
    return [
        "--task_def", str(REPO / "task_defs" / "glue.yml"),
        "--data_dir", str(REPO / "data" / "glue_sample"),
        "--tasks", tasks,
        "--init_checkpoint", str(tiny_encoder),
        "--output_dir", str(out),
        "--max_train_samples", "24",
        "--max_eval_samples", "16",
        "--batch_size", "8",
        "--eval_batch_size", "16",
        "--max_seq_len", "48",
        "--log_steps", "1",
        "--cache_dir", str(out.parent / f"{out.name}-cache"),
        *extra,
    ]  # fmt: skip


def run_train(argv: list[str]) -> int:
    from train import main

    return main(argv)


def _child(argv: list[str], fault: str | None, log: str) -> None:
    # One intra-op thread: a forked child must not enter an OpenMP region, whose thread team it did
    # not inherit (libgomp deadlocks); every forked run uses the same setting, so they stay comparable.
    torch.set_num_threads(1)
    os.environ.pop(FAULT_ENV, None)
    if fault:
        os.environ[FAULT_ENV] = fault
    with open(log, "w") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        sys.stdout = sys.stderr = f
        code = run_train(argv)
        f.flush()
    os._exit(code)


def run_forked(argv: list[str], fault: str | None = None, log: Path | None = None) -> int:
    """train.py's main in a forked child process; its exit code, or -N if signal N killed it."""
    log = log or Path(argv[argv.index("--output_dir") + 1]).with_suffix(".log")
    proc = multiprocessing.get_context("fork").Process(target=_child, args=(argv, fault, str(log)))
    proc.start()
    proc.join()
    return proc.exitcode


def tensors_of(checkpoint: Path) -> dict[str, torch.Tensor]:
    """Model and head weights of a checkpoint, plus its regularizer state when it has one."""
    out = {f"model.{k}": v for k, v in load_file(str(checkpoint / "model.safetensors")).items()}
    out.update({f"heads.{k}": v for k, v in load_file(str(checkpoint / "heads.safetensors")).items()})
    regs = checkpoint / "training_state" / "regularizers-rank0.safetensors"
    if regs.is_file():
        out.update({f"regularizers.{k}": v for k, v in load_file(str(regs)).items()})
    return out


def assert_identical_runs(a: Path, b: Path) -> None:
    """Bit-identical final weights (and regularizer state), metrics and logged scalars."""
    ca, cb = latest_checkpoint(a), latest_checkpoint(b)
    assert ca is not None and cb is not None and ca.name == cb.name
    ta, tb = tensors_of(ca), tensors_of(cb)
    assert ta.keys() == tb.keys()
    differ = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    ra["best"].pop("checkpoint"), rb["best"].pop("checkpoint")
    for key in ("results", "final", "best"):
        assert json.dumps(ra[key]) == json.dumps(rb[key]), key  # as text: NaN == NaN
    for key in ("steps", "epochs_completed", "skipped_steps", "truncated_examples"):
        assert ra["run"][key] == rb["run"][key], key
    # every logged loss, lr, gradient norm and dev metric, step by step, each exactly once
    assert (a / "history.jsonl").read_text() == (b / "history.jsonl").read_text()


def history(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
