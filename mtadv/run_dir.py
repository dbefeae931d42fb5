"""The output directory: which run it holds, whether this run may use it, checkpoint housekeeping.

A run's identity is its resolved configuration, written to `<output_dir>/run_config.json` when
the run starts. Starting again on a directory that holds
- nothing of mtadv's: a fresh run;
- the same run (same identity) with a `checkpoint-<step>/`: resume from the newest one;
- the same run without a checkpoint: start over (nothing to resume from);
- a different run: an error naming the differing flags, unless --overwrite_output_dir.
`--resume` makes "resume" mandatory: no checkpoint, or a different run, is an error.
Flags in OPERATIONAL change how a run is carried out, not what it computes, so they may change
between a run and its resume.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from mtadv.config import AttackConfig, RunConfig, method_settings, setting_owners
from mtadv.errors import UserError
from mtadv.resume import HISTORY_FILE, has_training_state, saved_history_bytes

RUN_CONFIG_FILE = "run_config.json"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
RUN_ENTRIES = (RUN_CONFIG_FILE, "results.json", HISTORY_FILE, "tb", "best")  # besides checkpoint-*/
OPERATIONAL = {
    "output_dir",
    "resume",
    "overwrite_output_dir",
    "save_steps",
    "save_total_limit",
    "log_steps",
    "eval_batch_size",
    "num_workers",
    "device",
    "cache_dir",
    "max_skipped_steps",
    "trust_remote_code",
}
# Robustness attacks change what is measured at evaluation, never the training itself.
OPERATIONAL |= {"eval_attack"} | {f.name for f in dataclasses.fields(AttackConfig)}
PATHS = {"data_dir"}  # stored absolute (check_config), so a checkpoint is usable from any directory


def run_identity(cfg: RunConfig, task_names: list[str]) -> dict[str, dict[str, Any]]:
    """The resolved configuration, with --tasks spelled out (the default means 'every task')."""
    ident = cfg.to_dict()
    explicit = ident.pop("adv_explicit")  # how the values were chosen; the resolved values are the identity
    ident["train"]["tasks"] = ",".join(task_names)
    for name in idle_settings(cfg, explicit):
        del ident["adv"][name]
    return ident


def idle_settings(cfg: RunConfig, explicit: list[str]) -> list[str]:
    """The methods' own settings (`Regularizer.settings`) that no task of this run reads: unset, and not
    a setting of the CLI's method. (A task whose `adv:` picks another method starts from that method's
    defaults plus the explicit settings, never from these values.) They are left out of the identity, so a
    run_config.json written before methods declared their settings (which stored vat_xi = 1e-6 for every
    method) still matches, and so does one written before a plugin added a setting."""
    return [n for n in method_settings() if n not in explicit and cfg.adv.adv not in setting_owners(n)]


def checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete training checkpoint, oldest first."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    found = []
    for p in out.iterdir():
        m = CHECKPOINT_RE.match(p.name)
        if m and p.is_dir() and has_training_state(p):
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    found = checkpoints(output_dir)
    return found[-1][1] if found else None


def checkpoint_step(path: Path) -> int:
    return int(CHECKPOINT_RE.match(path.name).group(1))


def holds_run(output_dir: Path) -> bool:
    if not output_dir.is_dir():
        return False
    return any((output_dir / e).exists() for e in RUN_ENTRIES) or any(
        CHECKPOINT_RE.match(p.name) for p in output_dir.iterdir()
    )


def plan_output_dir(cfg: RunConfig, task_names: list[str]) -> tuple[Path | None, bool]:
    """(checkpoint to resume from or None, whether to clear the directory first). Reads only."""
    tc, out = cfg.train, Path(cfg.train.output_dir)
    _check_is_a_directory(out)
    if not holds_run(out):
        if tc.resume:
            raise UserError(f"--resume: --output_dir {out} holds no run to resume; drop --resume to start one")
        return None, False
    if tc.overwrite_output_dir:
        if tc.resume:
            raise UserError("--resume and --overwrite_output_dir contradict each other; pass one of them")
        return None, True
    _check_same_run(out, run_identity(cfg, task_names), tc.resume)
    ckpt = latest_checkpoint(out)
    if ckpt is None and tc.resume:
        raise UserError(
            f"--resume: {out} holds this run but no checkpoint-<step>/ with training state; "
            "drop --resume to start it over"
        )
    return ckpt, ckpt is None  # the same run without a checkpoint starts over


def _check_is_a_directory(out: Path) -> None:
    """--output_dir (and every existing folder above it) must be a directory, not a file."""
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            where = "is" if p == out else f"is inside {p}, which is"
            raise UserError(f"--output_dir {out} {where} a file, not a directory; pass a directory path")
        if p.exists():
            return


def describe_on_disk(output_dir: str | Path) -> str:
    """What a run stopped at once (a second Ctrl-C, a Ctrl-C during start-up) leaves in its output dir."""
    out = Path(output_dir)
    last = latest_checkpoint(out)
    if last is not None:
        return f"the newest complete checkpoint is {last}; rerun the same command to resume from it"
    if holds_run(out):
        return f"{out} holds this run's settings but no checkpoint yet; rerun the same command to start it over"
    return f"nothing was written to {out}"


def _check_same_run(out: Path, identity: dict, resume: bool) -> None:
    path = out / RUN_CONFIG_FILE
    action = "cannot resume" if resume else "refusing to write into it"
    if not path.is_file():
        raise UserError(
            f"--output_dir {out} holds files of a run (results, checkpoints or logs) but no {RUN_CONFIG_FILE}, "
            f"so it cannot be identified; {action}. Use a new --output_dir or pass --overwrite_output_dir."
        )
    stored = json.loads(path.read_text())
    diff = config_diff(stored, identity)
    if diff:
        shown = "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
        raise UserError(
            f"--output_dir {out} holds a different run ({shown}); {action}. Rerun with the original settings "
            "to resume it, use a new --output_dir, or pass --overwrite_output_dir to discard it."
        )


def config_diff(stored: dict, current: dict) -> list[str]:
    """`--flag: <stored> there, <current> here` for every identity flag that differs."""
    diff = []
    for section, values in current.items():
        old = stored.get(section, {})
        for key, value in values.items():
            if key in OPERATIONAL or key not in old:
                continue  # a flag added since that run was written cannot have been set by it
            if key in PATHS and os.path.abspath(old[key]) == value:
                continue  # written relative (older versions): the same folder when rerun from the same place
            if old[key] != value:
                diff.append(f"--{key}: {old[key]!r} there, {value!r} here")
    return diff


def prepare_output_dir(out: Path, identity: dict, clear: bool, resume_from: Path | None) -> None:
    """Rank 0, after every check passed: clear or repair the directory, record the run's identity."""
    out.mkdir(parents=True, exist_ok=True)
    if clear:
        for p in out.iterdir():
            if p.name in RUN_ENTRIES or CHECKPOINT_RE.match(p.name) or _is_leftover(p.name):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    recover_interrupted_writes(out)
    if resume_from is not None:
        truncate_history(out, saved_history_bytes(resume_from))
    tmp = out / f".{RUN_CONFIG_FILE}.tmp"
    tmp.write_text(json.dumps(identity, indent=2))
    os.replace(tmp, out / RUN_CONFIG_FILE)


def _is_leftover(name: str) -> bool:
    """Temp/old/deleting siblings that atomic writes and rotation leave if killed."""
    return name.startswith(".") and (".tmp-" in name or name.endswith((".old", ".deleting")))


def recover_interrupted_writes(out: Path) -> None:
    """Undo what a kill between two renames can leave: put a lone `.<name>.old` back, drop temps."""
    for p in out.iterdir():
        if not p.is_dir() or not _is_leftover(p.name):
            continue
        if p.name.endswith(".old") and not (out / p.name[1:-4]).exists():
            os.replace(p, out / p.name[1:-4])  # killed after moving the old copy aside: restore it
        else:
            shutil.rmtree(p, ignore_errors=True)


def rotate_checkpoints(out: Path, keep: int) -> None:
    """Keep the newest `keep` checkpoint-<step>/ (0 keeps all); best/ is never touched."""
    if keep <= 0:
        return
    for _, path in checkpoints(out)[:-keep]:
        doomed = path.with_name(f".{path.name}.deleting")  # vanish atomically, then delete at leisure
        os.replace(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)


def truncate_history(out: Path, nbytes: int) -> None:
    """Cut history.jsonl back to its size at the checkpoint: the resumed run logs those steps again."""
    path = out / HISTORY_FILE
    if path.is_file() and path.stat().st_size > nbytes:
        with open(path, "r+b") as f:
            f.truncate(nbytes)
