"""Reading raw task files, tokenizing, collating, sampling, metrics and submissions.

The repo keeps this folder at the top; pyproject.toml installs it as `mtadv.data_utils` (editable or
not), so import it under that name. A top-level `data_utils` is a name other projects use too: mtadv
installs none, and refuses to be imported as one (from the repo root it would load a second copy of
every module, with registries of its own).
"""

if __name__ != "mtadv.data_utils":
    raise ImportError(
        f"mtadv's data layer was imported as {__name__!r}; import mtadv.data_utils instead "
        "(e.g. `from mtadv.data_utils.readers import read_split`), after `pip install -e .`"
    )
