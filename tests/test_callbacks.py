"""The Trainer's public surface: callback events (mtadv.callbacks) and state_dict() / load_state_dict()."""

from __future__ import annotations

import torch
from training_runs import train_args

from mtadv.build import build_trainer
from mtadv.callbacks import TeacherCallback
from mtadv.config import build_parser, config_from_args
from mtadv.faults import FaultInjection


def _build(argv: list[str]):
    return build_trainer(config_from_args(build_parser("test").parse_args(argv)))


class Recorder:
    """Records every event, in order; has no on_save, so only the events it defines are called."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def on_step_end(self, trainer, logs) -> None:
        self.events.append(("step_end", trainer.state.step, "train/lr" in logs))

    def on_evaluate(self, trainer, results) -> None:
        self.events.append(("evaluate", trainer.state.step, sorted(results)))

    def on_train_end(self, trainer, payload) -> None:
        self.events.append(("train_end", trainer.state.step, "results" in payload))
        payload["recorder"] = len(self.events)


def test_callback_events_come_in_order_and_may_add_to_results(tiny_encoder, tmp_path, monkeypatch):
    monkeypatch.delenv("MTADV_FAULT", raising=False)
    trainer = _build(train_args(tiny_encoder, tmp_path / "run", "--max_steps", "4", "--eval_steps", "2"))
    assert trainer.callbacks == []  # no teacher, no MTADV_FAULT: nothing attached
    rec = Recorder()
    trainer.callbacks.append(rec)
    payload = trainer.train()
    tasks = sorted(trainer.tasks)
    assert rec.events == [
        ("step_end", 1, True),
        ("evaluate", 2, tasks),
        ("step_end", 2, True),  # after the step's evaluation
        ("step_end", 3, True),
        ("evaluate", 4, tasks),
        ("step_end", 4, True),
        ("train_end", 4, True),
    ]
    assert payload["recorder"] == 7


def test_the_builder_attaches_the_teacher_and_fault_callbacks(tiny_encoder, tmp_path, monkeypatch):
    monkeypatch.setenv("MTADV_FAULT", "kill_after_step@999")
    trainer = _build(train_args(tiny_encoder, tmp_path / "run", "--max_steps", "2", "--smart"))
    assert [type(c) for c in trainer.callbacks] == [TeacherCallback, FaultInjection]


def test_state_dict_round_trips_into_a_fresh_trainer(tiny_encoder, tmp_path):
    argv = ["--max_steps", "4", "--smart"]
    trainer = _build(train_args(tiny_encoder, tmp_path / "a", *argv))
    for group in trainer.batches(0, 0):
        trainer.train_step(group)
        trainer.state.step += 1
        if trainer.state.step == 2:
            break
    sd = trainer.state_dict()
    assert set(sd) == {"total_steps", "optimizer", "scheduler", "scaler", "state", "regularizers"}
    fresh = _build(train_args(tiny_encoder, tmp_path / "b", *argv))
    fresh.load_state_dict(sd)
    again = fresh.state_dict()
    assert again["state"] == sd["state"] and again["scheduler"] == sd["scheduler"]
    assert again["regularizers"]["tasks"] == sd["regularizers"]["tasks"]
    saved, loaded = sd["regularizers"]["states"], again["regularizers"]["states"]
    assert [sorted(x) for x in loaded] == [sorted(x) for x in saved] and any(saved)  # the EMA teacher's weights
    same = [
        torch.equal(x[k], y[k]) if torch.is_tensor(x[k]) else x[k] == y[k] for x, y in zip(saved, loaded) for k in x
    ]
    assert all(same)
    steps = [s["step"] for s in sd["optimizer"]["state"].values()]
    assert steps and max(map(float, steps)) == 2  # a task head steps only with its task's batches
    assert [float(s["step"]) for s in again["optimizer"]["state"].values()] == [float(s) for s in steps]
