"""Flags: every numeric flag's declared range, one-line parse errors, presets as optional booleans,
and a --help that states each default once and lists the registered methods."""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path
from typing import get_type_hints

import pytest
from training_runs import run_train, train_args

from mtadv.config import SECTIONS, RunConfig, TrainConfig, build_parser, check_config, config_from_args, range_text
from mtadv.errors import ConfigError
from mtadv.predict import PredictConfig


def _numeric(section: type) -> list:
    hints = get_type_hints(section)
    return [f for f in fields(section) if hints[f.name] in (int, float)]


def _out_of_range(f, typ: type) -> list[str]:
    """Values just outside each declared bound (and NaN for floats)."""
    m, step = f.metadata, 1 if typ is int else 0.5
    values = [m["ge"] - step] if "ge" in m else []
    values += [m["gt"]] if "gt" in m else []
    values += [m["le"] + step] if "le" in m else []
    values += [m["lt"]] if "lt" in m else []
    return [str(v) for v in values] + (["nan"] if typ is float else [])


def _cases(sections: list[type]) -> list:
    cases = []
    for section in sections:
        hints = get_type_hints(section)
        for f in _numeric(section):
            cases += [pytest.param(f.name, v, id=f"--{f.name}={v}") for v in _out_of_range(f, hints[f.name])]
    return cases


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize("section", [*SECTIONS.values(), PredictConfig], ids=lambda s: s.__name__)
def test_every_numeric_flag_declares_its_range(section):
    undeclared = [f.name for f in _numeric(section) if not range_text(f.metadata)]
    assert not undeclared, f"declare ge/gt/le/lt in the field metadata of {undeclared}"


@pytest.mark.parametrize("name,value", _cases(list(SECTIONS.values())))
def test_an_out_of_range_flag_stops_before_writing(name, value, tiny_encoder, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_train([*train_args(tiny_encoder, out), f"--{name}", value]) == 2
    line = _one_error_line(capsys)
    assert f"--{name}: " in line and "out of range; pass a value" in line, line
    assert not out.exists()


@pytest.mark.parametrize("name,value", _cases([PredictConfig]))
def test_an_out_of_range_predict_flag_stops_before_writing(name, value, tmp_path, capsys):
    from predict import main

    out = tmp_path / "out"
    assert main(["--checkpoint", str(tmp_path), "--output_dir", str(out), f"--{name}", value]) == 2
    assert f"--{name}: " in _one_error_line(capsys)
    assert not out.exists()


def test_the_range_message_names_the_flag_and_the_allowed_values():
    cfg = RunConfig(train=TrainConfig(warmup_ratio=1.5))
    with pytest.raises(ConfigError, match=r"^--warmup_ratio: 1.5 is out of range; pass a value in \[0, 1\]$"):
        check_config(cfg)


def test_infinite_radius_is_allowed_only_where_declared():
    check_config(RunConfig(adv=RunConfig().adv.__class__(adv="awp", adv_eps=math.inf)))  # AWP's unclamped step
    with pytest.raises(ConfigError, match="--learning_rate"):
        check_config(RunConfig(train=TrainConfig(learning_rate=math.inf)))


def test_check_config_strips_tasks_and_makes_data_dir_absolute(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    cfg = check_config(RunConfig(train=TrainConfig(tasks=" rte, stsb ,", data_dir="data")))
    assert cfg.train.tasks == "rte,stsb" and cfg.train.data_dir == str(tmp_path / "data")


# ---------------------------------------------------------------- parsing


def _parse_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        build_parser("t").parse_args(argv)
    assert info.value.code == 2
    return _one_error_line(capsys)


def test_abbreviations_are_not_flags(capsys):
    line = _parse_error(["--lr", "1e-4"], capsys)  # was taken as --lr_scheduler 1e-4
    assert "unrecognized arguments: --lr 1e-4" in line


def test_a_misspelled_flag_is_one_line_with_a_suggestion(capsys):
    line = _parse_error(["--lerning_rate", "1e-4"], capsys)
    assert "--lerning_rate" in line and "did you mean --learning_rate?" in line and "usage" not in line


def test_a_bad_value_is_one_line(capsys):
    assert "--batch_size: invalid int value: 'x'" in _parse_error(["--batch_size", "x"], capsys)


@pytest.mark.parametrize("argv,method", [([], "none"), (["--smart"], "smart"), (["--smart", "true"], "smart")])
def test_presets_take_an_optional_bool(argv, method):
    assert config_from_args(build_parser("t").parse_args(argv)).adv.adv == method
    assert config_from_args(build_parser("t").parse_args([*argv, "--smart", "false"])).adv.adv == "none"


def test_the_predict_parser_does_not_abbreviate(capsys):
    from mtadv.cli import build_predict_parser

    with pytest.raises(SystemExit):
        build_predict_parser().parse_args(["--check", "x"])
    assert "unrecognized arguments: --check x" in _one_error_line(capsys)


# ---------------------------------------------------------------- --help


def _help(capsys) -> str:
    with pytest.raises(SystemExit):
        build_parser("t").parse_args(["--help"])
    return " ".join(capsys.readouterr().out.split("options:", 1)[1].split())  # unwrapped, without the usage


def test_help_states_each_default_once_and_lists_the_methods(capsys):
    from mtadv.adversarial import ADV_METHODS

    text = _help(capsys)
    assert text.count("(default:") == text.count("(default") and "(default: (default" not in text
    for flag in ("--tasks", "--init_checkpoint", "--cache_dir", "--adv_weight_pattern"):
        entry = text.split(f"{flag} {flag.upper()[2:]}")[1].split(" --")[0]
        assert entry.count("(default") == 1, (flag, entry)
    adv = text.split("--adv ADV")[1].split(" --adv_weight")[0]
    assert all(name in adv for name in ADV_METHODS.names())
    assert "TrainConfig(" not in text and "Data, model, optimization" in text


def test_help_states_behaviour_not_results(capsys):
    text = _help(capsys)
    assert "hurt" not in text and "STS-B" not in text
    entry = text.split("--eval_with_teacher [BOOL]")[1].split(" --")[0]
    assert "either way" in entry  # a run with a teacher saves it without the flag too


def test_the_cli_reference_points_to_help_for_the_methods_and_has_one_default_per_flag():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "cli_reference", Path(__file__).parent.parent / "scripts/cli_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = {flag: (default, meaning) for flag, default, meaning in module.rows()}
    # the registered names depend on what is installed: --help lists them, the generated file points there
    assert "freelb" not in rows["`--adv`"][1] and "train.py --help" in rows["`--adv`"][1]
    from mtadv.config import build_parser

    assert "freelb" in build_parser("x").format_help()
    assert rows["`--adv_lr`"][0] == "`0.001` or the method's own"
    assert rows["`--adv_start_epoch`"][0] == "`0`"  # no method sets its own
