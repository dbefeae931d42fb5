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
