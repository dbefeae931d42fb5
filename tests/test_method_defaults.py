"""Each method's own defaults: `--adv NAME` alone is never SMART's paper-scale no-op, explicit
settings always win, and a task that picks another method in its `adv:` gets that method's."""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import math
import sys
from pathlib import Path

import pytest
from conftest import GLUE_YAML

from mtadv.adversarial import ADV_METHODS, build_regularizers
from mtadv.config import (
    AdvConfig,
    RunConfig,
    adv_config_for_task,
    build_parser,
    check_config,
    config_from_args,
    method_defaults,
    method_settings,
    section_types,
)
from mtadv.errors import ConfigError
from mtadv.run_dir import config_diff, run_identity
from mtadv.taskdef import load_task_defs

BUILTIN = AdvConfig()
WITH_DEFAULTS = [n for n in ADV_METHODS.names() if ADV_METHODS.get(n).defaults]


def cfg_of(*argv: str) -> RunConfig:
    return config_from_args(build_parser("t").parse_args(list(argv)))


@pytest.mark.parametrize("name", ADV_METHODS.names())
def test_defaults_name_real_fields_of_the_right_type(name):
    hints = section_types(AdvConfig)  # the fields and every method's own settings
    for key, value in ADV_METHODS.get(name).defaults.items():
        assert key in hints, f"{name}: {key} is not an AdvConfig field or a method's setting"
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
    assert cfg_of("--adv", "fgm", "--adv_norm", "l2").adv.adv_norm == "l2"
    assert cfg_of("--adv", "awp").adv.adv_eps == math.inf  # the paper's unclamped step
    smart = cfg_of("--smart").adv
    assert (smart.adv_eps, smart.adv_norm) == (1e-5, "linf")
    assert cfg_of("--adv", "fgm").adv_explicit == ["adv"]


def test_a_task_that_switches_method_gets_that_methods_defaults():
    base = cfg_of("--adv_lr", "0.2")  # --adv none on the CLI; one explicit setting
    pgd = adv_config_for_task(base.adv, {"method": "pgd"}, "rte", "t.yml", base.adv_explicit)
    assert (pgd.adv, pgd.adv_eps, pgd.adv_steps, pgd.adv_norm, pgd.adv_space) == ("pgd", 0.003, 3, "linf", "embedding")
    assert pgd.adv_lr == 0.2  # the CLI's explicit value beats the method's default (0.0015)
    own = adv_config_for_task(base.adv, {"method": "pgd", "adv_lr": 0.05}, "rte", "t.yml", base.adv_explicit)
    assert own.adv_lr == 0.05  # the task's own value beats both


def test_a_task_on_the_clis_method_keeps_the_clis_settings():
    base = cfg_of("--adv", "vat", "--adv_eps", "0.5")  # VAT's own ℓ2, where SMART's built-in is ℓ∞
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


# ---------------------------------------------------------------- settings a method declares itself

OWN_SETTING_MODULE = """
import mtadv
from mtadv.adversarial.fgm import FGM
from mtadv.config import setting


@mtadv.register_method("test_scaled_fgm")
class ScaledFGM(FGM):
    name = "test_scaled_fgm"
    settings = {"test_fgm_scale": setting(0.5, "test: a knob of this method only", gt=0, le=1)}
"""


@pytest.fixture
def scaled_fgm(tmp_path, monkeypatch):
    """A method with its own setting, in a module of its own, registered through mtadv.register_method."""
    (tmp_path / "mtadv_test_scaled_fgm.py").write_text(OWN_SETTING_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("mtadv_test_scaled_fgm")
    yield "test_scaled_fgm"
    ADV_METHODS._items.pop("test_scaled_fgm", None)  # leave the registry as the other tests know it
    sys.modules.pop("mtadv_test_scaled_fgm", None)


def test_a_methods_own_setting_is_a_flag_a_config_key_and_range_checked(scaled_fgm, tmp_path, capsys):
    assert "test_fgm_scale" in method_settings()  # nothing in mtadv/config.py names it
    assert cfg_of("--adv", scaled_fgm).adv.test_fgm_scale == 0.5  # its declared default
    cfg = cfg_of("--adv", scaled_fgm, "--test_fgm_scale", "0.25")
    assert cfg.adv.test_fgm_scale == 0.25 and "test_fgm_scale" in cfg.adv_explicit
    (tmp_path / "run.yml").write_text("test_fgm_scale: 0.125\n")
    assert cfg_of("--adv", scaled_fgm, "--config", str(tmp_path / "run.yml")).adv.test_fgm_scale == 0.125
    assert AdvConfig(adv=scaled_fgm, test_fgm_scale=0.75).test_fgm_scale == 0.75  # the Python API
    with pytest.raises(ConfigError) as info:
        check_config(cfg_of("--adv", scaled_fgm, "--test_fgm_scale", "2"))
    assert str(info.value) == "--test_fgm_scale: 2.0 is out of range; pass a value in (0, 1]"
    with pytest.raises(SystemExit):
        build_parser("t").parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # unwrapped
    assert "--test_fgm_scale TEST_FGM_SCALE test: a knob of this method only (default: 0.5)" in help_text


def test_a_methods_own_setting_is_a_tasks_adv_key(scaled_fgm, tmp_path):
    glue = GLUE_YAML.read_text(encoding="utf-8")
    adv = "    adv: {method: test_scaled_fgm, test_fgm_scale: 0.1}\n"
    (tmp_path / "tasks.yml").write_text(glue.replace("  rte:\n", f"  rte:\n{adv}", 1))
    tasks = {"rte": load_task_defs(tmp_path / "tasks.yml")["rte"]}
    (reg,) = build_regularizers(cfg_of("--test_fgm_scale", "0.9"), tasks)["rte"]  # the task's value wins
    assert type(reg).__name__ == "ScaledFGM" and reg.cfg.test_fgm_scale == 0.1
    with pytest.raises(ConfigError) as info:
        adv_config_for_task(AdvConfig(adv=scaled_fgm), {"test_fgm_scale": 3}, "rte", "t.yml")
    assert str(info.value) == "t.yml: task 'rte': adv.test_fgm_scale: 3.0 is out of range; pass a value in (0, 1]"


def test_a_setting_name_is_unique_across_flags_and_methods(monkeypatch):
    from mtadv.adversarial.fgm import FGM
    from mtadv.config import setting

    class Clash(FGM):
        settings = {"adv_eps": setting(0.1, "clashes with the shared --adv_eps")}

    monkeypatch.setitem(ADV_METHODS._items, "test_clash", Clash)
    with pytest.raises(ValueError, match="'test_clash': setting 'adv_eps' is already a flag"):
        method_settings()
    Clash.settings = {"vat_xi": setting(0.5, "VAT's name, another meaning", gt=0)}
    with pytest.raises(ValueError, match="'vat_xi' is declared differently by another method"):
        method_settings()


@pytest.mark.parametrize(
    "text,names",
    [
        ("vat_ix: 0.1\n", ["run.yml", "vat_ix", "did you mean vat_xi?"]),
        ("freeat_replay: 3\n", ["run.yml", "freeat_replay", "did you mean freeat_replays?"]),
    ],
)
def test_an_unknown_config_key_suggests_the_setting(text, names, tmp_path):
    (tmp_path / "run.yml").write_text(text)
    with pytest.raises(ConfigError) as info:
        cfg_of("--config", str(tmp_path / "run.yml"))
    assert all(n in str(info.value) for n in names), str(info.value)


def test_an_unknown_adv_key_suggests_the_setting():
    with pytest.raises(ConfigError) as info:
        adv_config_for_task(AdvConfig(adv="vat"), {"vat_ix": 0.1}, "rte", "t.yml")
    message = str(info.value)
    assert message.startswith("t.yml: task 'rte': adv: unknown setting(s) ['vat_ix'] (did you mean vat_xi?)")


def test_a_setting_of_a_method_no_task_runs_warns(caplog):
    tasks = {t: d for t, d in load_task_defs(GLUE_YAML).items() if t in ("rte", "mrpc")}
    with caplog.at_level(logging.WARNING, logger="mtadv.adversarial"):
        build_regularizers(cfg_of("--adv", "fgm", "--vat_xi", "0.1"), tasks)
    assert caplog.messages == [
        "vat_xi is a setting of --adv vat, which no task it is set for runs (mrpc: fgm, rte: fgm): it has no effect"
    ]
    caplog.clear()
    mixed = {**tasks, "mrpc": dataclasses.replace(tasks["mrpc"], adv={"method": "fgm"})}
    with caplog.at_level(logging.WARNING, logger="mtadv.adversarial"):
        regs = build_regularizers(cfg_of("--adv", "vat", "--vat_xi", "0.1"), mixed)  # rte runs VAT with it
    assert regs["rte"][0].cfg.vat_xi == 0.1 and caplog.messages == []


def test_a_tasks_adv_setting_of_another_method_warns(caplog):
    rte = load_task_defs(GLUE_YAML)["rte"]
    task = dataclasses.replace(rte, adv={"method": "pgd", "freelb_max_norm": 0.2})
    with caplog.at_level(logging.WARNING, logger="mtadv.adversarial"):
        build_regularizers(RunConfig(), {"rte": task})
    assert caplog.messages == [
        "freelb_max_norm is a setting of --adv freelb, which no task it is set for runs (rte: pgd): it has no effect"
    ]


FIXTURE = Path(__file__).parent / "fixtures" / "run_configs" / "before_method_settings.json"
# FGM's and FreeAT's defaults changed after those files were written (from the text methods' ε = 1, ℓ2 per
# example on the word embeddings, to ℓ∞ 0.003 per token in the embedding space; FreeAT's step η = ε with
# them): the same run today names the old ones.
_WORD_BALL = ["--adv_space", "word", "--adv_eps", "1", "--adv_norm", "l2", "--adv_norm_level", "example"]
OLD_DEFAULTS = {"fgm": _WORD_BALL, "freeat": [*_WORD_BALL, "--adv_lr", "1"]}


@pytest.mark.parametrize("case", sorted(json.loads(FIXTURE.read_text())))
def test_configs_written_before_methods_declared_settings_still_load_and_resume(case):
    """run_config.json and checkpoint configs of mtadv at a605013 (where AdvConfig had vat_xi, freeat_replays,
    freelb_max_norm and adv_weight_pattern as fields; tests/fixtures/run_configs/) load, and the same flags
    today are the same run: resume and reruns accept the directory."""
    old = json.loads(FIXTURE.read_text())[case]
    loaded = RunConfig.from_dict(old["checkpoint_config"])
    assert loaded.adv.to_dict() == old["checkpoint_config"]["adv"]  # every value as saved
    cfg = cfg_of(*old["argv"], *OLD_DEFAULTS.get(old["run_config"]["adv"]["adv"], []))
    assert config_diff(old["run_config"], run_identity(cfg, ["rte"])) == []
    # The same values, but for one that no task reads: VAT's ξ in a config of another method, once the built-in
    # 1e-6, now VAT's own 1e-2 (left out of the identity, so the directory still matches).
    changed = {n for n in method_settings() if getattr(cfg.adv, n) != old["checkpoint_config"]["adv"][n]}
    assert changed <= ({"vat_xi"} if cfg.adv.adv != "vat" and "vat_xi" not in cfg.adv_explicit else set())


def test_resuming_a_run_of_fgms_old_defaults_names_each_changed_default():
    """A directory of `--adv fgm` from before the change is not silently resumed under the new defaults."""
    old = json.loads(FIXTURE.read_text())["fgm_vat_xi"]
    diff = config_diff(old["run_config"], run_identity(cfg_of(*old["argv"]), ["rte"]))
    assert sorted(d.split(":")[0] for d in diff) == ["--adv_eps", "--adv_norm", "--adv_norm_level", "--adv_space"]
