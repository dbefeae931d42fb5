"""The docs cannot drift: every flag of `--help` is in the generated references, the examples load,
the links resolve, and each method's page states the defaults the code uses."""

from __future__ import annotations

import importlib.util
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mtadv.taskdef import load_task_defs

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"
CLI_DOC = DOCS / "cli.md"
PREDICT_DOC = DOCS / "predict.md"
SCHEMA_DOC = DOCS / "task_definitions.md"
# pages another engineer writes: links to them are checked once they exist
WRITTEN_ELSEWHERE = {DOCS / "methods" / "rdrop.md", DOCS / "methods" / "sift.md"}
# the README's fresh-machine commands, kept exactly as they are (`.ci/run` runs the second verbatim)
DEMO_COMMAND = (
    'python3 -m venv .venv && . .venv/bin/activate && (python -c "import torch" 2>/dev/null || pip install '
    'torch==2.13.0) && pip install -e ".[demo]" && python train.py --tasks rte,mrpc,stsb,cola --output_dir runs/demo'
)
TEST_COMMAND = (
    'python3 -m venv .venv && . .venv/bin/activate && (python -c "import torch" 2>/dev/null || pip install '
    'torch==2.13.0) && pip install -e ".[dev]" && ruff check . && ruff format --check . && python -m pytest'
)


def load_script(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def help_text(script: str, capsys) -> str:
    """`python <script> --help`, run in-process through the script's own main()."""
    module = load_script(REPO / script)
    with pytest.raises(SystemExit) as info:
        module.main(["--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def block(path: Path, name: str) -> str:
    text = path.read_text(encoding="utf-8")
    match = re.search(rf"<!-- {name} -->\n(.*?)\n<!-- /{name} -->", text, re.S)
    assert match, f"{path.relative_to(REPO)} has no <!-- {name} --> block"
    return match.group(1)


def markdown_files() -> list[Path]:
    return [README, REPO / "CHANGELOG.md", REPO / "benchmarks" / "README.md", *sorted(DOCS.rglob("*.md"))]


# ------------------------------------------------------------------ the quickstart
def test_quickstart_commands_are_unchanged_and_ci_runs_the_test_one():
    readme = README.read_text(encoding="utf-8")
    assert f"```bash\n{DEMO_COMMAND}\n```" in readme
    assert f"```bash\n{TEST_COMMAND}\n```" in readme
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert TEST_COMMAND.split(" && ", 2)[2] in ci.splitlines()  # what follows the venv activation, verbatim


# ------------------------------------------------------------------ flags
@pytest.mark.parametrize("script, doc", [("train.py", CLI_DOC), ("predict.py", PREDICT_DOC)])
def test_every_flag_of_help_is_documented(script, doc, capsys):
    # the options argparse lists, one per line (not words like "--flag" in a group's description)
    flags = sorted(set(re.findall(r"^ {2}(--[a-z][a-z0-9_]*)", help_text(script, capsys), re.M)) - {"--help"})
    assert len(flags) > 5
    text = doc.read_text(encoding="utf-8")
    missing = [f for f in flags if f"`{f}`" not in text]
    assert not missing, (
        f"flags of `python {script} --help` not documented in {doc.relative_to(REPO)}: {missing}. "
        "Run `python scripts/cli_reference.py --write`."
    )


def test_cli_reference_is_the_generated_file():
    """docs/cli.md is exactly what scripts/cli_reference.py prints (regenerate it with --write)."""
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "cli_reference.py")], capture_output=True, text=True, check=True
    ).stdout
    assert CLI_DOC.read_text(encoding="utf-8") == out, "run `python scripts/cli_reference.py --write`"


def test_predict_flag_table_is_the_generated_one():
    script = load_script(REPO / "scripts" / "cli_reference.py")
    assert block(PREDICT_DOC, "section:predict-flags") == script.predict_markdown(), (
        "run `python scripts/cli_reference.py --write`"
    )


# ------------------------------------------------------------------ task definitions
def test_schema_examples_are_valid_task_definitions(tmp_path):
    """Every YAML block of docs/task_definitions.md and the README that defines `tasks:` passes validation."""
    blocks = []
    for path in (SCHEMA_DOC, README):
        blocks += re.findall(r"```yaml\n(.*?)```", path.read_text(encoding="utf-8"), re.S)
    task_blocks = [b for b in blocks if b.lstrip().startswith("tasks:")]
    assert len(task_blocks) >= 3
    for i, text in enumerate(task_blocks):
        path = tmp_path / f"example{i}.yml"
        path.write_text(text, encoding="utf-8")
        assert load_task_defs(path), text
        assert isinstance(yaml.safe_load(text)["tasks"], dict)


def test_schema_documents_every_key():
    from mtadv.losses import DIVERGENCES, TASK_LOSSES
    from mtadv.taskdef import COLUMN_ROLES, FORMATS, SPLIT_KEYS, TASK_KEYS, TASK_TYPES

    text = SCHEMA_DOC.read_text(encoding="utf-8")
    names = TASK_KEYS | SPLIT_KEYS | COLUMN_ROLES | FORMATS | set(TASK_TYPES.names())
    names |= set(TASK_LOSSES.names()) | set(DIVERGENCES.names())
    missing = [k for k in sorted(names) if f"`{k}`" not in text]
    assert not missing, f"docs/task_definitions.md does not document {missing}"


# ------------------------------------------------------------------ links and methods
def test_relative_links_resolve():
    broken = []
    for path in markdown_files():
        text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            resolved = (path.parent / target.split("#")[0]).resolve()
            if not resolved.exists() and resolved not in WRITTEN_ELSEWHERE:
                broken.append(f"{path.relative_to(REPO)}: {target}")
    assert not broken, f"links to missing files: {broken}"


def test_every_method_is_documented_and_every_page_and_row_is_a_method():
    """A method's module docstring is its documentation of record: it cites the paper (with its year).
    A method with a page under docs/methods/ has a row in the README's methods table linking it, and
    every page and row names a registered method. So a new method file needs no other edit to pass,
    and a page, once written, cannot go unlisted or outlive its method."""
    import importlib

    from mtadv.adversarial import ADV_METHODS

    readme = README.read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `(\w+)` \|.*\(docs/methods/(?:\w+)\.md", readme, re.M))
    linked = {m.group(1) for m in re.finditer(r"^\| `(\w+)` \|.*\(docs/methods/\1\.md", readme, re.M)}
    pages = {p.stem for p in (DOCS / "methods").glob("*.md")}
    names = set(ADV_METHODS.names())
    for name in sorted(names):
        doc = importlib.import_module(ADV_METHODS.get(name).__module__).__doc__ or ""
        assert re.search(r"\b(19|20)\d\d\b", doc), f"{name}: its module docstring cites no paper (authors, year)"
        if name in pages:
            assert name in linked, f"README: no methods-table row for {name} linking docs/methods/{name}.md"
    assert rows <= names, f"README rows for unregistered methods: {sorted(rows - names)}"
    assert pages <= names, f"docs/methods/ pages of unregistered methods: {sorted(pages - names)}"


def shown(value) -> str:
    """How a default is written in a page's defaults table."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:g}"
    return str(value)


def pages_with_defaults() -> list[Path]:
    return sorted(p for p in (DOCS / "methods").glob("*.md") if p not in WRITTEN_ELSEWHERE)


@pytest.mark.parametrize("page", pages_with_defaults(), ids=lambda p: p.stem)
def test_method_page_states_the_defaults_the_code_uses(page):
    """Every row of a page's defaults block gives the value the method runs with when the flag is not set,
    every default the method brings itself has a row, and every setting it declares is on the page."""
    from mtadv.adversarial import ADV_METHODS
    from mtadv.config import SECTIONS, adv_defaults, field_default, section_fields

    name = page.stem
    assert name in ADV_METHODS, f"{page.relative_to(REPO)} documents no registered method"
    expected = {f.name: field_default(f) for s in SECTIONS.values() for f in section_fields(s)}
    expected |= adv_defaults(name)
    rows = re.findall(r"^\| `--(\w+)`[^|]*\| `([^`]*)`", block(page, "defaults"), re.M)
    assert rows, f"{page.relative_to(REPO)}: the defaults block has no rows"
    wrong = [(flag, value, shown(expected[flag])) for flag, value in rows if value != shown(expected[flag])]
    assert not wrong, f"{page.relative_to(REPO)}: (flag, page, code) differ: {wrong}"
    missing = sorted(set(ADV_METHODS.get(name).defaults) - {flag for flag, _ in rows})
    assert not missing, f"{page.relative_to(REPO)}: no row for the method's own defaults {missing}"
    text = page.read_text(encoding="utf-8")
    undocumented = [s for s in ADV_METHODS.get(name).settings if f"`--{s}`" not in text]
    assert not undocumented, f"{page.relative_to(REPO)}: never names its own settings {undocumented}"
