"""Exact resume: a run stopped at any point and restarted ends bit-identical to one never stopped.

The interrupted runs are real processes (forked children running train.py's main) killed with
SIGKILL at chosen points: after an optimizer step before its checkpoint, in the middle of writing
a checkpoint, at an epoch boundary, and twice in one run. The regularizer cases stop a run with
SIGTERM at a step (in-process), restart it, and compare, for every registered method.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from training_runs import assert_identical_runs, run_forked, run_train, train_args

from mtadv.adversarial import ADV_METHODS
from mtadv.checkpoint import atomic_write_dir, load_checkpoint
from mtadv.resume import capture_rng, pack, read_packed, restore_rng, unpack, write_packed
from mtadv.run_dir import checkpoints, latest_checkpoint

# ---------------------------------------------------------------- unit: the state containers


def test_nested_state_round_trips_without_pickle(tmp_path):
    w = torch.randn(3, 4)
    state = {
        "teacher": {"module.w": w, "module.tied": w, "n_averaged": torch.tensor(5)},  # shared storage
        "delta": None,
        "schedule": (1, 2.5, float("inf"), "linear"),
        "buffers": [torch.zeros(2, dtype=torch.bfloat16), torch.arange(3)],
        7: "an int key",
        "numpy": np.arange(4, dtype=np.uint32),
        "flag": True,
    }
    write_packed(pack(state), tmp_path, "s")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "s.safetensors"]  # JSON + safetensors only
    back = unpack(read_packed(tmp_path, "s"))
    assert torch.equal(back["teacher"]["module.w"], w) and torch.equal(back["teacher"]["module.tied"], w)
    assert back["teacher"]["n_averaged"].item() == 5 and back["delta"] is None
    assert back["schedule"] == (1, 2.5, math.inf, "linear") and isinstance(back["schedule"], tuple)
    assert back["buffers"][0].dtype == torch.bfloat16 and torch.equal(back["buffers"][1], torch.arange(3))
    assert back[7] == "an int key" and back["flag"] is True
    assert back["numpy"].dtype == np.uint32 and back["numpy"].tolist() == [0, 1, 2, 3]


def test_unsupported_state_is_named():
    with pytest.raises(TypeError, match=r"state\.bad"):
        pack({"bad": object()})


def test_every_rng_stream_is_restored(tmp_path):
    saved = capture_rng(torch.device("cpu"))
    write_packed(pack(saved), tmp_path, "rng")
    first = (random.random(), np.random.rand(), torch.rand(3))
    restore_rng(unpack(read_packed(tmp_path, "rng")))
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == second[0] and first[1] == second[1] and torch.equal(first[2], second[2])


def test_failed_write_leaves_the_previous_directory(tmp_path):
    target = tmp_path / "checkpoint-1"
    atomic_write_dir(target, lambda d: (d / "weights").write_text("good"))

    def crash(d: Path) -> None:
        (d / "weights").write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write_dir(target, crash)
    assert (target / "weights").read_text() == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-1"]  # no temp left behind


# ---------------------------------------------------------------- SIGKILL at chosen points

KILL_ARGS = ("--max_steps", "10", "--save_steps", "1", "--save_total_limit", "2")  # epoch end at step 6


@pytest.fixture(scope="module")
def uninterrupted(tiny_encoder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    assert run_forked(train_args(tiny_encoder, out, *KILL_ARGS)) == 0
    return out


@pytest.mark.integration
@pytest.mark.parametrize(
    "faults",
    [
        ("kill_after_step@3",),  # mid-epoch, after the step, before its checkpoint
        ("kill_after_step@7",),  # first step of epoch 2: resumes across the epoch-end eval
        ("kill_in_save@5",),  # half-way through writing checkpoint-5
        ("kill_after_step@2", "kill_in_save@9"),  # killed twice
    ],
    ids=lambda f: "+".join(f).replace("@", "-at-"),
)
def test_sigkill_then_restart_is_bit_identical(faults, uninterrupted, tiny_encoder, tmp_path):
    out = tmp_path / "run"
    args = train_args(tiny_encoder, out, *KILL_ARGS)
    for fault in faults:
        assert run_forked(args, fault) == -9  # really killed
        step = int(fault.split("@")[1])
        if fault.startswith("kill_in_save"):
            assert any(".tmp-" in p.name for p in out.iterdir())  # the half-written checkpoint
            ckpt = latest_checkpoint(out)
            assert ckpt.name == f"checkpoint-{step - 1}"  # the previous one is the newest complete one
            load_checkpoint(str(ckpt))  # ... and it loads
    assert run_forked(args) == 0  # the same command again: resumes
    assert_identical_runs(uninterrupted, out)
    assert not any(p.name.startswith(".") for p in out.iterdir())  # temp dirs cleaned up


@pytest.mark.integration
def test_rotation_keeps_the_newest_checkpoints_and_best(uninterrupted):
    assert [step for step, _ in checkpoints(uninterrupted)] == [9, 10]
    assert (uninterrupted / "best" / "model.safetensors").is_file()


# ---------------------------------------------------------------- every regularizer, grad accumulation

METHOD_CASES = {"plain": [], "smart+teacher": ["--smart"]}
METHOD_CASES.update({name: ["--adv", name] for name in ADV_METHODS.names()})  # a new method is tested here


@pytest.mark.integration
@pytest.mark.parametrize("case", sorted(METHOD_CASES))
def test_stop_and_resume_is_exact_for_every_regularizer(case, tiny_encoder, tmp_path, monkeypatch, capsys):
    """grad_accum 2 (3 groups per epoch), stopped by SIGTERM after step 2, resumed; FreeAT replays batches."""
    extra = ["--max_steps", "5", "--grad_accum", "2", *METHOD_CASES[case]]
    reference, out = tmp_path / "reference", tmp_path / "run"
    assert run_train(train_args(tiny_encoder, reference, *extra)) == 0
    monkeypatch.setenv("MTADV_FAULT", "sigterm_after_step@2")
    assert run_train(train_args(tiny_encoder, out, *extra)) == 143
    assert "received SIGTERM" in capsys.readouterr().err
    monkeypatch.delenv("MTADV_FAULT")
    assert run_train(train_args(tiny_encoder, out, *extra)) == 0
    assert_identical_runs(reference, out)
