"""Exact resume: everything that says where training is, saved inside `checkpoint-<step>/`.

    checkpoint-<step>/                     a complete model checkpoint (mtadv.checkpoint), plus
        training_state/
            trainer_state.json             TrainState: step, epoch, batch in epoch, best value and
                                           results, skipped steps, examples seen; world size
            optimizer.pt                   optimizer, LR scheduler and GradScaler state dicts
                                           (torch.save; read back with weights_only=True only)
            rng-rank<r>.json/.safetensors  Python, NumPy, torch CPU (and CUDA) RNG states of rank r
            regularizers-rank<r>.json/.safetensors
                                           every task's Regularizer.state_dict() (EMA teacher,
                                           FreeAT's carried perturbation, ...): rank 0 always,
                                           another rank only where its state differs from rank 0's.
                                           The EMA teacher is stored here only: a training checkpoint
                                           has no teacher/ folder (best/ has; `regularizer_state`)

Nested state (dicts, lists, tuples, numbers, strings, None, tensors) is stored as a JSON skeleton
plus one safetensors file, so no checkpoint file written here needs pickle to be read.
The multi-task sampler needs no file: its epoch plan depends only on (seed, epoch), so resuming at
(epoch, batch_in_epoch) replays the same batches. Checkpoints are taken at optimizer-step
boundaries after a whole grad-accumulation group and all of its replays (FreeAT), so no
partially-accumulated gradient or half-replayed batch is ever part of the state.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from mtadv import faults
from mtadv.checkpoint import torch_load
from mtadv.errors import UserError

if TYPE_CHECKING:  # mtadv.trainer imports this module
    from mtadv.trainer import Trainer

STATE_DIR = "training_state"
TRAINER_STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
HISTORY_FILE = "history.jsonl"  # written by mtadv.tracking.RunTracker
STATE_FORMAT = 1
_TENSOR, _TUPLE, _DICT, _NDARRAY = "__tensor__", "__tuple__", "__dict__", "__ndarray__"

Packed = tuple[Any, dict[str, Tensor]]  # (JSON skeleton, tensors by key)


# ---------------------------------------------------------------- nested state <-> JSON + safetensors
def pack(tree: Any) -> Packed:
    """Split nested state into a JSON-able skeleton and a flat dict of CPU tensors."""
    tensors: dict[str, Tensor] = {}
    return _encode(tree, tensors, "state"), tensors


def unpack(packed: Packed) -> Any:
    skeleton, tensors = packed
    return _decode(skeleton, tensors)


def _encode(x: Any, tensors: dict[str, Tensor], path: str) -> Any:
    if isinstance(x, Tensor):
        key = str(len(tensors))
        tensors[key] = x.detach().to("cpu", copy=True).contiguous()  # a copy: no shared storage
        return {_TENSOR: key}
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return {_NDARRAY: x.tolist(), "dtype": str(x.dtype)}
    if isinstance(x, tuple):  # torch.Size included
        return {_TUPLE: [_encode(v, tensors, f"{path}[{i}]") for i, v in enumerate(x)]}
    if isinstance(x, list):
        return [_encode(v, tensors, f"{path}[{i}]") for i, v in enumerate(x)]
    if isinstance(x, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in x):
            return {k: _encode(v, tensors, f"{path}.{k}") for k, v in x.items()}
        return {_DICT: [[_encode(k, tensors, path), _encode(v, tensors, f"{path}[{k!r}]")] for k, v in x.items()]}
    raise TypeError(
        f"cannot checkpoint a {type(x).__name__} at {path}: a state_dict() may hold tensors, numbers, "
        "strings, None, lists, tuples and dicts"
    )


def _decode(x: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(x, list):
        return [_decode(v, tensors) for v in x]
    if not isinstance(x, dict):
        return x
    if _TENSOR in x:
        return tensors[x[_TENSOR]]
    if _TUPLE in x:
        return tuple(_decode(v, tensors) for v in x[_TUPLE])
    if _NDARRAY in x:
        return np.array(x[_NDARRAY], dtype=x["dtype"])
    if _DICT in x:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in x[_DICT]}
    return {k: _decode(v, tensors) for k, v in x.items()}


def write_packed(packed: Packed, directory: Path, stem: str) -> None:
    skeleton, tensors = packed
    save_file(tensors, str(directory / f"{stem}.safetensors"))
    (directory / f"{stem}.json").write_text(json.dumps(skeleton))


def read_packed(directory: Path, stem: str, device: str | torch.device = "cpu") -> Packed:
    skeleton = json.loads((directory / f"{stem}.json").read_text())
    return skeleton, load_file(str(directory / f"{stem}.safetensors"), device=str(device))


def same_packed(a: Packed, b: Packed) -> bool:
    return a[0] == b[0] and a[1].keys() == b[1].keys() and all(torch.equal(a[1][k], b[1][k]) for k in a[1])


# ---------------------------------------------------------------- RNG
def capture_rng(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------- save
def rank_local_state(trainer: Trainer) -> dict[str, Packed]:
    """What differs between DDP ranks: RNG streams and (possibly) regularizer state."""
    return {"rng": pack(capture_rng(trainer.device)), "regularizers": pack(trainer.state_dict()["regularizers"])}


def unique_regularizers(regularizers: dict[str, list]) -> tuple[list, dict[str, list[int]]]:
    """Each regularizer object once (the EMA teacher is shared by tasks), and task -> indices into them."""
    unique: list = []
    index: dict[int, int] = {}  # id(regularizer) -> position in unique
    layout: dict[str, list[int]] = {}
    for task, regs in regularizers.items():
        for r in regs:
            if id(r) not in index:
                index[id(r)] = len(unique)
                unique.append(r)
        layout[task] = [index[id(r)] for r in regs]
    return unique, layout


def write_training_state(directory: Path, trainer: Trainer, rank_states: list[dict[str, Packed]]) -> None:
    """Write training_state/ into a checkpoint being assembled (inside its atomic temp dir): rank 0's
    Trainer.state_dict(), bar its regularizers, which come with every rank's RNG in rank_states."""
    sd = trainer.state_dict()
    d = directory / STATE_DIR
    d.mkdir()
    meta = {
        "format_version": STATE_FORMAT,
        "world_size": len(rank_states),
        "total_steps": sd["total_steps"],
        "history_bytes": _size(Path(trainer.tracker.output_dir) / HISTORY_FILE),  # resume cuts history.jsonl here
        "state": sd["state"],
    }
    (d / TRAINER_STATE_FILE).write_text(json.dumps(meta, indent=1))
    torch.save({k: sd[k] for k in ("optimizer", "scheduler", "scaler")}, d / OPTIMIZER_FILE)
    faults.in_save(sd["state"]["step"])  # tests: a crash or a full disk half-way through the write
    for rank, st in enumerate(rank_states):
        write_packed(st["rng"], d, f"rng-rank{rank}")
        if rank == 0 or not same_packed(st["regularizers"], rank_states[0]["regularizers"]):
            write_packed(st["regularizers"], d, f"regularizers-rank{rank}")


def chain_writers(*writers: Callable[[Path], None] | None) -> Callable[[Path], None] | None:
    """One `extra` callback for save_checkpoint that runs each given writer in turn."""
    active = [w for w in writers if w is not None]
    if not active:
        return None

    def write_all(tmp: Path) -> None:
        for w in active:
            w(tmp)

    return write_all


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


# ---------------------------------------------------------------- load
def has_training_state(checkpoint: Path) -> bool:
    return (checkpoint / STATE_DIR / TRAINER_STATE_FILE).is_file()


def saved_history_bytes(checkpoint: Path) -> int:
    """Size of history.jsonl when the checkpoint was taken: lines after it were logged by a killed run."""
    meta = json.loads((checkpoint / STATE_DIR / TRAINER_STATE_FILE).read_text())
    return int(meta.get("history_bytes", 0))


def load_training_state(trainer: Trainer, checkpoint: Path) -> None:
    """Read a checkpoint's training_state/ into Trainer.load_state_dict(), then restore the RNG (last)."""
    d = checkpoint / STATE_DIR
    meta = json.loads((d / TRAINER_STATE_FILE).read_text())
    if meta.get("format_version") != STATE_FORMAT:
        raise UserError(f"{d}: training-state format {meta.get('format_version')} is not {STATE_FORMAT}")
    if meta["total_steps"] != trainer.total_steps:
        raise UserError(
            f"{checkpoint}: saved for {meta['total_steps']} optimizer steps but this run has {trainer.total_steps}; "
            "resume with the original --epochs/--max_steps/--batch_size/--grad_accum"
        )
    sd = dict(torch_load(d / OPTIMIZER_FILE))  # optimizer, scheduler, scaler
    sd["regularizers"] = unpack(read_packed(d, _rank_stem(d, "regularizers", trainer.rank), trainer.device))
    sd["state"], sd["total_steps"] = meta["state"], meta["total_steps"]
    try:
        trainer.load_state_dict(sd)
    except UserError as e:
        raise UserError(f"{d}: {e}") from None
    if meta["world_size"] != trainer.world_size and trainer.rank == 0:
        print(
            f"warning: {checkpoint} was written by {meta['world_size']} process(es), this run has "
            f"{trainer.world_size}: training continues at the same batch, but dropout and noise streams "
            "differ, so it is not bit-identical to an uninterrupted run"
        )
    restore_rng(unpack(read_packed(d, _rank_stem(d, "rng", trainer.rank))))


def regularizer_state(checkpoint: Path, name: str) -> dict[str, Any] | None:
    """Rank 0's state of the regularizer called `name` in a training checkpoint (None: no such state)."""
    d = checkpoint / STATE_DIR
    if not (d / "regularizers-rank0.json").is_file():
        return None
    saved = unpack(read_packed(d, "regularizers-rank0"))
    names = saved.get("names", [])
    return saved["states"][names.index(name)] if name in names else None


def _rank_stem(d: Path, kind: str, rank: int) -> str:
    own = f"{kind}-rank{rank}"
    return own if (d / f"{own}.json").is_file() else f"{kind}-rank0"
