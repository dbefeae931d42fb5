"""Each method's own defaults: `--adv NAME` alone is never SMART's paper-scale no-op, explicit
settings always win, and a task that picks another method in its `adv:` gets that method's."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import get_type_hints

import pytest

from mtadv.adversarial import ADV_METHODS
from mtadv.config import AdvConfig, RunConfig, adv_config_for_task, build_parser, config_from_args, method_defaults
from mtadv.run_dir import run_identity

BUILTIN = AdvConfig()
WITH_DEFAULTS = [n for n in ADV_METHODS.names() if ADV_METHODS.get(n).defaults]


def cfg_of(*argv: str) -> RunConfig:
    return config_from_args(build_parser("t").parse_args(list(argv)))


@pytest.mark.parametrize("name", ADV_METHODS.names())
def test_defaults_name_real_fields_of_the_right_type(name):
    hints = get_type_hints(AdvConfig)
    for key, value in ADV_METHODS.get(name).defaults.items():
        assert key in {f.name for f in fields(AdvConfig)}, f"{name}: {key} is not an AdvConfig field"
        assert isinstance(value, hints[key]) or (hints[key] is float and isinstance(value, int)), (name, key)


def test_every_classic_method_has_its_own_scale():
    # SMART's and ALUM's presets carry their paper values; every other method must not run at ε = 1e-5
    assert set(ADV_METHODS.names()) - set(WITH_DEFAULTS) == {"smart", "alum"}


@pytest.mark.parametrize("name", WITH_DEFAULTS)
def test_adv_name_alone_takes_the_methods_defaults(name):
    adv = cfg_of("--adv", name).adv
    for key, value in ADV_METHODS.get(name).defaults.items():
        assert getattr(adv, key) == value, (name, key)
    assert adv.adv_eps != BUILTIN.adv_eps or "adv_eps" not in ADV_METHODS.get(name).defaults


def test_explicit_flags_and_presets_win_over_method_defaults():
    assert cfg_of("--adv", "fgm", "--adv_eps", "0.25").adv.adv_eps == 0.25
    assert cfg_of("--adv", "fgm", "--adv_norm", "linf").adv.adv_norm == "linf"
    assert cfg_of("--adv", "awp").adv.adv_eps == math.inf  # the paper's unclamped step
    smart = cfg_of("--smart").adv
    assert (smart.adv_eps, smart.adv_norm) == (1e-5, "linf")
    assert cfg_of("--adv", "fgm").adv_explicit == ["adv"]


def test_a_task_that_switches_method_gets_that_methods_defaults():
    base = cfg_of("--adv_lr", "0.2")  # --adv none on the CLI; one explicit setting
    pgd = adv_config_for_task(base.adv, {"method": "pgd"}, "rte", "t.yml", base.adv_explicit)
    assert (pgd.adv, pgd.adv_eps, pgd.adv_steps, pgd.adv_norm) == ("pgd", 1.0, 3, "l2")
    assert pgd.adv_lr == 0.2  # the CLI's explicit value beats the method's default (0.3)
    own = adv_config_for_task(base.adv, {"method": "pgd", "adv_lr": 0.05}, "rte", "t.yml", base.adv_explicit)
    assert own.adv_lr == 0.05  # the task's own value beats both


def test_a_task_on_the_clis_method_keeps_the_clis_settings():
    base = cfg_of("--adv", "fgm", "--adv_eps", "0.5")
    same = adv_config_for_task(base.adv, {"adv_weight": 2.0}, "rte", "t.yml", base.adv_explicit)
    assert (same.adv_eps, same.adv_weight, same.adv_norm) == (0.5, 2.0, "l2")
    back = adv_config_for_task(base.adv, {"method": "smart"}, "rte", "t.yml", base.adv_explicit)
    assert (back.adv, back.adv_norm, back.adv_eps) == ("smart", "linf", 0.5)  # SMART's built-ins, explicit ε


def test_explicit_set_survives_a_saved_config_and_stays_out_of_the_identity():
    cfg = cfg_of("--adv", "fgm", "--adv_eps", "0.5")
    assert RunConfig.from_dict(cfg.to_dict()).adv_explicit == ["adv", "adv_eps"]
    assert "adv_explicit" not in run_identity(cfg, ["rte"])
    assert method_defaults("none") == {} and method_defaults("no-such-method") == {}


# ---------------------------------------------------------------- every entry point resolves them


@pytest.mark.parametrize("name", WITH_DEFAULTS)
def test_the_python_api_and_a_config_file_get_the_methods_defaults(name, tmp_path):
    assert AdvConfig(adv=name) == cfg_of("--adv", name).adv  # not SMART's built-in values
    (tmp_path / "run.yml").write_text(f"adv: {name}\n")
    assert cfg_of("--config", str(tmp_path / "run.yml")).adv == AdvConfig(adv=name)


def test_build_regularizers_from_the_python_api_runs_freelb_at_its_defaults():
    from conftest import GLUE_YAML

    from mtadv.adversarial import build_regularizers
    from mtadv.taskdef import load_task_defs

    tasks = {t: d for t, d in load_task_defs(GLUE_YAML).items() if t == "rte"}
    (reg,) = build_regularizers(RunConfig(adv=AdvConfig(adv="freelb")), tasks)["rte"]
    assert (reg.cfg.adv_steps, reg.cfg.adv_lr) == (ADV_METHODS.get("freelb").defaults["adv_steps"], 0.1)


def test_a_presets_values_are_defaults_of_its_method_only():
    smart = cfg_of("--smart")
    assert smart.adv_explicit == [] and (smart.adv.adv, smart.adv.bregman_mu) == ("smart", 1.0)
    freelb = adv_config_for_task(smart.adv, {"method": "freelb"}, "rte", "t.yml", smart.adv_explicit)
    assert freelb == AdvConfig(adv="freelb")  # FreeLB's own K, η, σ; no teacher term either
    assert freelb.adv_steps == ADV_METHODS.get("freelb").defaults["adv_steps"] and freelb.bregman_mu == 0.0
    lr = cfg_of("--smart", "--adv_lr", "0.05")  # what the user set still reaches the task
    assert adv_config_for_task(lr.adv, {"method": "freelb"}, "rte", "t.yml", lr.adv_explicit).adv_lr == 0.05


@pytest.mark.parametrize("argv", [["--smart", "--adv", "fgm"], ["--smart", "--alum"]], ids=["adv", "two-presets"])
def test_a_preset_and_another_method_contradict(argv):
    from mtadv.errors import ConfigError

    with pytest.raises(ConfigError, match="contradicts"):
        cfg_of(*argv)


@pytest.mark.parametrize(
    "argv", [[], ["--smart"], ["--adv", "freelb", "--adv_lr", "0.2"]], ids=["plain", "smart", "freelb"]
)
def test_a_saved_config_is_its_resolved_values(argv):
    """run_config.json round-trips to the same values and identity: resume and reruns match."""
    cfg = cfg_of(*argv)
    again = RunConfig.from_dict(cfg.to_dict())
    assert again == cfg and run_identity(again, ["rte"]) == run_identity(cfg, ["rte"])


def test_a_tasks_own_adv_values_are_range_checked():
    from mtadv.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        adv_config_for_task(AdvConfig(), {"method": "fgm", "adv_eps": -1}, "rte", "t.yml")
    assert str(info.value) == "t.yml: task 'rte': adv.adv_eps: -1.0 is out of range; pass a value >= 0"
