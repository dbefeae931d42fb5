"""The docs cannot drift: every flag of `--help` is in README.md, and the README's examples load."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mtadv.taskdef import load_task_defs

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"


def help_text(script: str, capsys) -> str:
    """`python <script> --help`, run in-process through the script's own main()."""
    spec = importlib.util.spec_from_file_location(script.removesuffix(".py"), REPO / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as info:
        module.main(["--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def section(name: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"<!-- section:{name} -->(.*?)<!-- /section:{name} -->", text, re.S)
    assert match, f"README.md has no section:{name}"
    return match.group(1)


@pytest.mark.parametrize("script", ["train.py", "predict.py"])
def test_every_flag_of_help_is_in_the_readme(script, capsys):
    if not (REPO / script).exists():
        pytest.skip(f"{script} not present")
    flags = sorted(set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9_]*)", help_text(script, capsys))) - {"--help"})
    assert len(flags) > 5
    readme = README.read_text(encoding="utf-8")
    missing = [f for f in flags if f"`{f}`" not in readme]
    assert not missing, (
        f"flags of `python {script} --help` not documented in README.md: {missing}. "
        "For train.py run `python scripts/cli_reference.py --write`; otherwise add them to your README section."
    )


def test_cli_reference_section_is_the_generated_table():
    """section:cli is exactly what scripts/cli_reference.py prints (regenerate it with --write)."""
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "cli_reference.py")], capture_output=True, text=True, check=True
    ).stdout
    assert section("cli").strip() == out.strip(), "run `python scripts/cli_reference.py --write`"


def test_schema_examples_are_valid_task_definitions(tmp_path):
    """Every YAML block of section:schema that defines `tasks:` passes validation."""
    blocks = re.findall(r"```yaml\n(.*?)```", section("schema"), re.S)
    task_blocks = [b for b in blocks if b.lstrip().startswith("tasks:")]
    assert len(task_blocks) >= 2
    for i, block in enumerate(task_blocks):
        path = tmp_path / f"example{i}.yml"
        path.write_text(block, encoding="utf-8")
        assert load_task_defs(path), block
        assert isinstance(yaml.safe_load(block)["tasks"], dict)


def test_schema_documents_every_key():
    from mtadv.taskdef import COLUMN_ROLES, FORMATS, SPLIT_KEYS, TASK_KEYS, TASK_TYPES

    text = section("schema")
    missing = [k for k in sorted(TASK_KEYS | SPLIT_KEYS | COLUMN_ROLES | FORMATS) if f"`{k}`" not in text]
    missing += [t for t in TASK_TYPES.names() if f"`{t}`" not in text]
    assert not missing, f"section:schema does not document {missing}"
