"""mtadv: multi-task fine-tuning of transformer encoders with adversarial regularization.

The Python API (README, docs/hf_trainer.md); names load on first use, so `import mtadv` stays light:

    mtadv.list_methods()                     # the registered adversarial methods
    mtadv.build_trainer(mtadv.RunConfig())   # what mtadv-train runs; .train() returns the results
    mtadv.load_checkpoint("runs/x/best")     # (model, tokenizer, task_defs, run_config)
    mtadv.AdversarialTrainer(...)            # the methods inside a transformers.Trainer script
    @mtadv.register_method("name")           # your own method (also: register_head, register_task_type)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "AdvConfig": "mtadv.config",
    "RunConfig": "mtadv.config",
    "TeacherConfig": "mtadv.config",
    "TrainConfig": "mtadv.config",
    "build_trainer": "mtadv.build",
    "AdversarialTrainer": "mtadv.hf",
    "Regularizer": "mtadv.adversarial",
    "StepContext": "mtadv.adversarial",
    "list_methods": "mtadv.api",
    "load_checkpoint": "mtadv.api",
    "load_plugins": "mtadv.api",
    "register_head": "mtadv.api",
    "register_method": "mtadv.api",
    "register_task_type": "mtadv.api",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'mtadv' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
