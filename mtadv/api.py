"""The Python API behind `mtadv.<name>`: list, build, load, and extend mtadv from your own package.

Your own method, head or task type needs no edit of mtadv: register it when your module is imported.
In a Python script, import your module before `build_trainer`; for `mtadv-train`, declare the module
as an entry point of group `mtadv.plugins` in your package, and the commands import it at start-up:

    # pyproject.toml of your package
    [project.entry-points."mtadv.plugins"]
    mine = "my_package.mtadv_methods"
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from mtadv.adversarial import ADV_METHODS, Regularizer
from mtadv.taskdef import TASK_TYPES, TaskType
from mtadv.tasks import HEADS, PIPELINES

PLUGIN_GROUP = "mtadv.plugins"
T = TypeVar("T")
_loaded: set[str] = set()


def list_methods() -> list[str]:
    """The registered adversarial methods (`--adv NAME`, `AdversarialTrainer(adv=NAME)`)."""
    return ADV_METHODS.names()


def register_method(name: str) -> Callable[[type[Regularizer]], type[Regularizer]]:
    """Class decorator: a Regularizer subclass as method `name` (docs/hf_trainer.md has an example)."""
    return ADV_METHODS.register(name)


def register_head(name: str) -> Callable[[T], T]:
    """Decorator: a head builder `f(hidden_size, num_outputs, dropout, encoder, **_) -> nn.Module` whose module
    maps (hidden (B, T, H), batch) to (B, C) logits or (B,) scores; a task type names it (register_task_type)."""
    return HEADS.register(name)


def register_task_type(name: str, *, head: str, like: str = "classification", **changes: Any) -> TaskType:
    """A task type (`type: NAME` in a task definition) that is `like` (its labels, losses, metrics, reading,
    tokenizing and evaluation) with your head, and any other TaskType field changed."""
    ttype = dataclasses.replace(TASK_TYPES.get(like), name=name, head=head, **changes)
    TASK_TYPES.register(name)(ttype)
    PIPELINES.register(name)(PIPELINES.get(like))
    return ttype


def load_checkpoint(path: str, trust_remote_code: bool = False):
    """(model, tokenizer, task_defs, run_config) from an mtadv checkpoint directory (best/, checkpoint-N/)."""
    from mtadv.checkpoint import load_checkpoint as load  # light-import: transformers, for `import mtadv`

    return load(path, trust_remote_code)


def load_plugins() -> list[str]:
    """Import every module declared in entry-point group `mtadv.plugins` (once); their names."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=PLUGIN_GROUP):
        if ep.name not in _loaded:
            ep.load()
            _loaded.add(ep.name)
    return sorted(_loaded)
