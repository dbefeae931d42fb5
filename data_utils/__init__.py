"""The data layer: reading raw task files, tokenizing, collating, sampling, metrics and submissions.

It sits between the task-definition schema and everything that trains or predicts: its modules
import from mtadv only what lies below them (`mtadv.errors`, `mtadv.registry` and `mtadv.taskdef`,
whose TaskDef and SplitDef say what to read) and nothing above: no model, no task type (a type's
label parser comes with its TaskType), no training. mtadv.tasks builds each type's pipeline from these
functions. tests/test_imports.py checks the layering and that there are no import cycles.

The repo keeps this folder at the top, beside mtadv/, and it stays there: pyproject.toml's
package-dir installs it as `mtadv.data_utils` (editable or not), and a checkout's mtadv finds it
there (mtadv/__init__.py), so import it under that name. A top-level `data_utils` is
a name other projects use too: mtadv installs none, and refuses to be imported as one (from the repo
root it would load a second copy of every module, with registries of its own).
"""

if __name__ != "mtadv.data_utils":
    raise ImportError(
        f"mtadv's data layer was imported as {__name__!r}; import mtadv.data_utils instead "
        "(e.g. `from mtadv.data_utils.readers import read_split`), after `pip install -e .`"
    )
