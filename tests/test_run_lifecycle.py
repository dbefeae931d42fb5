"""A run's life on disk: wrong paths, Ctrl-C at start-up and twice, reruns of a finished command,
seconds across resumes, and the EMA teacher stored once per checkpoint."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from training_runs import REPO, run_train, train_args

from mtadv.run_dir import checkpoints, config_diff, latest_checkpoint
from predict import main as predict_main


def _stderr_line(capsys, prefix: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------- paths


def test_init_checkpoint_pointing_at_a_run_directory_names_the_fix(tiny_encoder, tmp_path, capsys):
    run = tmp_path / "x"
    (run / "best").mkdir(parents=True)
    (run / "run_config.json").write_text("{}")
    out = tmp_path / "new"
    assert run_train([*train_args(run, out), "--max_steps", "1"]) == 2
    line = _stderr_line(capsys, "error: ")
    assert f"{run} is an mtadv run directory" in line and f"pass {run / 'best'} or" in line
    assert not out.exists()


def test_init_checkpoint_pointing_at_a_folder_without_a_model(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert run_train([*train_args(tmp_path / "empty", tmp_path / "new"), "--max_steps", "1"]) == 2
    assert "no config.json, so it is not a Hugging Face model directory" in _stderr_line(capsys, "error: ")


def test_output_dir_that_is_a_file(tiny_encoder, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert run_train([*train_args(tiny_encoder, tmp_path / "file"), "--max_steps", "1"]) == 2
    assert "is a file, not a directory" in _stderr_line(capsys, "error: ")
    assert predict_main(["--checkpoint", str(tmp_path), "--output_dir", str(tmp_path / "file")]) == 2
    assert "is a file, not a directory" in _stderr_line(capsys, "error: ")
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.integration
def test_the_checkpoint_records_an_absolute_data_dir(tiny_encoder, tmp_path, monkeypatch):
    """predict.py from another directory finds the data; a rerun from the original one is the same run."""
    monkeypatch.chdir(REPO)
    out = tmp_path / "run"
    argv = [*train_args(tiny_encoder, out, "--max_steps", "1", tasks="rte"), "--data_dir", "data/glue_sample"]
    assert run_train(argv) == 0
    saved = json.loads((out / "best" / "run_config.json").read_text())["train"]["data_dir"]
    assert saved == str(REPO / "data" / "glue_sample")
    monkeypatch.chdir(tmp_path)
    assert predict_main(["--checkpoint", str(out / "best"), "--split", "dev", "--output_dir", "dev"]) == 0
    monkeypatch.chdir(REPO)
    assert run_train(argv) == 0  # not "a different run"
    relative = {"train": {"data_dir": "data/glue_sample"}}  # written by an older version
    assert config_diff(relative, {"train": {"data_dir": saved}}) == []


# ---------------------------------------------------------------- interrupts


def test_ctrl_c_during_start_up_is_one_line(tiny_encoder, tmp_path, monkeypatch, capsys):
    import mtadv.build

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mtadv.build, "read_task_data", interrupted)
    out = tmp_path / "run"
    assert run_train(train_args(tiny_encoder, out, "--max_steps", "1")) == 130
    line = _stderr_line(capsys, "stopped: ")
    assert line == f"stopped: received SIGINT: stopped at once; nothing was written to {out}"


@pytest.mark.parametrize("where", ["step", "save"])
def test_a_second_ctrl_c_says_what_is_on_disk(where, tiny_encoder, tmp_path, monkeypatch, capsys):
    """Two Ctrl-C in a row in step 3, or half-way through writing checkpoint-2: the newest complete
    checkpoint is named, nothing half-written is left, and the same command resumes."""
    import mtadv.trainer

    owner, name = (mtadv.trainer.Trainer, "train_step") if where == "step" else (mtadv.trainer, "write_training_state")
    original = getattr(owner, name)

    def twice(*args, **kwargs):
        trainer = args[0] if where == "step" else args[1]
        result = original(*args, **kwargs) if where == "save" else None
        if trainer.state.step == 2:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return result if where == "save" else original(*args, **kwargs)

    monkeypatch.setattr(owner, name, twice)
    out = tmp_path / "run"
    argv = train_args(tiny_encoder, out, "--max_steps", "4", "--save_steps", "1")
    assert run_train(argv) == 130
    line = _stderr_line(capsys, "stopped: ")
    newest = 2 if where == "step" else 1
    assert line == (
        f"stopped: received SIGINT: stopped at once; the newest complete checkpoint is {out / f'checkpoint-{newest}'}; "
        "rerun the same command to resume from it"
    )
    assert [s for s, _ in checkpoints(out)] == list(range(1, newest + 1))
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary directory left
    monkeypatch.setattr(owner, name, original)
    assert run_train(argv) == 0
    assert latest_checkpoint(out).name == "checkpoint-4"


# ---------------------------------------------------------------- reruns and seconds


def test_rerunning_a_finished_command_leaves_its_results(tiny_encoder, tmp_path, capsys):
    out = tmp_path / "run"
    argv = train_args(tiny_encoder, out, "--max_steps", "2", tasks="rte")
    assert run_train(argv) == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.name not in ("run_config.json", "history.jsonl")}
    results = (out / "results.json").read_text()
    capsys.readouterr()
    assert run_train(argv) == 0
    assert "finished (2 of 2 steps)" in capsys.readouterr().out
    assert (out / "results.json").read_text() == results
    assert {p: p.stat().st_mtime_ns for p in before} == before  # no checkpoint rewritten either


def test_seconds_accumulate_across_a_resume(tiny_encoder, tmp_path, monkeypatch):
    """The first session is slow (0.3 s a step), the resumed one fast: results.json counts both."""
    import mtadv.trainer

    original = mtadv.trainer.Trainer.train_step

    def slow(self, *args, **kwargs):
        time.sleep(0.3)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(mtadv.trainer.Trainer, "train_step", slow)
    monkeypatch.setenv("MTADV_FAULT", "sigterm_after_step@3")
    out = tmp_path / "run"
    argv = train_args(tiny_encoder, out, "--max_steps", "5", "--save_steps", "1", tasks="rte")
    assert run_train(argv) == 128 + signal.SIGTERM
    state = json.loads((out / "checkpoint-3" / "training_state" / "trainer_state.json").read_text())["state"]
    assert state["train_seconds"] >= 0.9
    monkeypatch.delenv("MTADV_FAULT")
    monkeypatch.setattr(mtadv.trainer.Trainer, "train_step", original)
    assert run_train(argv) == 0
    run = json.loads((out / "results.json").read_text())["run"]
    assert run["seconds"] >= state["train_seconds"]
    assert run["train_examples_per_second"] == pytest.approx(5 * 8 / run["seconds"], rel=0.05)


# ---------------------------------------------------------------- the teacher, stored once


@pytest.mark.integration
def test_a_training_checkpoint_stores_the_teacher_once(tiny_encoder, tmp_path):
    """checkpoint-<step>/ keeps the teacher in its training state only; best/ has teacher/; predict.py
    --use_teacher gives the same predictions from either."""
    out = tmp_path / "run"
    assert run_train(train_args(tiny_encoder, out, "--max_steps", "2", "--smart", tasks="rte")) == 0
    final = latest_checkpoint(out)
    assert not (final / "teacher").exists() and (out / "best" / "teacher" / "model.safetensors").is_file()
    metrics = {}
    for name, ckpt in [("best", out / "best"), ("final", final)]:  # one evaluation, at the end: the same step
        dev = tmp_path / name
        argv = ["--checkpoint", str(ckpt), "--use_teacher", "--split", "dev", "--output_dir", str(dev)]
        assert predict_main([*argv, "--progress", "false"]) == 0
        metrics[name] = (dev / "rte.dev.jsonl").read_text()  # every example's probabilities
    assert metrics["best"] == metrics["final"]
    student = tmp_path / "student"
    assert predict_main(["--checkpoint", str(final), "--split", "dev", "--output_dir", str(student)]) == 0
    assert (student / "rte.dev.jsonl").read_text() != metrics["final"]  # really the teacher
