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
import importlib.util
import sys
from pathlib import Path
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


class _CheckoutDataUtils:
    """Finds `mtadv.data_utils` in a source checkout, where data_utils/ sits beside mtadv/.

    An install puts it inside the package, and an editable install maps it there, so this finder
    (last on sys.meta_path) only answers when neither did: `python train.py` run from a checkout
    imports mtadv from the checkout, also where mtadv is installed non-editable or not at all."""

    @staticmethod
    def find_spec(fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        folder = Path(__file__).resolve().parent.parent / "data_utils"
        if fullname != "mtadv.data_utils" or not (folder / "__init__.py").is_file():
            return None
        return importlib.util.spec_from_file_location(
            fullname, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )


if not any(isinstance(f, type) and f.__name__ == "_CheckoutDataUtils" for f in sys.meta_path):
    sys.meta_path.append(_CheckoutDataUtils)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'mtadv' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
