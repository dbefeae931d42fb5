"""What a run does with bad input, signals, a full disk, NaN losses and untrusted checkpoints.

Every case goes through the CLI (train.py's main): a short message on stderr naming the file,
field or flag and the fix, a non-zero exit, and nothing half-written. Task-definition and data-file
errors (malformed YAML, unknown keys/type/loss/metric, missing file, column count, labels, empty
split) are tested case by case in test_taskdef.py; predicting with a checkpoint that lacks a
task's head in test_predict.py.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from training_runs import REPO, _child, run_train, train_args

from mtadv.run_dir import checkpoints, latest_checkpoint


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------- flags and config files


@pytest.mark.parametrize(
    "config_text,argv_extra,names",
    [
        ("learning_rate: [1e-5\n", [], ["run.yml", "cannot read config"]),  # malformed YAML
        ("learning_rat: 1e-5\n", [], ["run.yml", "learning_rat", "--help"]),  # unknown key
        ("", ["--adv", "smrt"], ["--adv", "smrt", "smart"]),  # unknown method, known ones listed
    ],
    ids=["malformed-yaml", "unknown-key", "unknown-method"],
)
def test_bad_flags_stop_before_writing(config_text, argv_extra, names, tiny_encoder, tmp_path, capsys):
    cfg = tmp_path / "run.yml"
    cfg.write_text(config_text)
    out = tmp_path / "run"
    assert run_train([*train_args(tiny_encoder, out), "--config", str(cfg), *argv_extra]) == 2
    msg = _error(capsys)
    assert all(n in msg for n in names), msg
    assert not out.exists()


def test_non_utf8_data_stops_before_writing(tiny_encoder, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(REPO / "data" / "glue_sample" / "RTE", data / "RTE")
    with open(data / "RTE" / "train.tsv", "ab") as f:
        f.write(b"999\tcaf\xe9 au lait\tcoffee\tentailment\n")  # Latin-1 byte
    out = tmp_path / "run"
    argv = train_args(tiny_encoder, out, "--data_dir", str(data), "--max_train_samples", "0", tasks="rte")
    assert run_train(argv) == 2
    msg = _error(capsys)
    assert "RTE/train.tsv" in msg and "UTF-8" in msg
    assert not out.exists()


# ---------------------------------------------------------------- inputs longer than --max_seq_len


def test_long_inputs_are_truncated_and_counted(tiny_encoder, tmp_path, capsys):
    from transformers import AutoTokenizer

    from mtadv.data_utils.readers import read_split
    from mtadv.taskdef import load_task_defs

    out = tmp_path / "run"
    assert run_train(train_args(tiny_encoder, out, "--max_steps", "1", "--max_seq_len", "24", tasks="rte")) == 0
    rows = read_split(load_task_defs(REPO / "task_defs" / "glue.yml")["rte"], "train", str(REPO / "data/glue_sample"))
    rows = rows.select(range(24))
    tok = AutoTokenizer.from_pretrained(tiny_encoder)
    expected = sum(len(ids) > 24 for ids in tok(list(rows["text_a"]), list(rows["text_b"]))["input_ids"])
    assert expected > 0
    run = json.loads((out / "results.json").read_text())["run"]
    assert run["truncated_examples"] == {"rte": expected}
    assert f"{expected} of 24 training examples are longer than --max_seq_len 24" in capsys.readouterr().out


# ---------------------------------------------------------------- NaN / inf losses


def test_a_nan_step_is_skipped_and_counted(tiny_encoder, tmp_path, monkeypatch):
    monkeypatch.setenv("MTADV_FAULT", "nan_loss_once@1")
    out = tmp_path / "run"
    assert run_train(train_args(tiny_encoder, out, "--max_steps", "3")) == 0
    assert json.loads((out / "results.json").read_text())["run"]["skipped_steps"] == 1


def test_a_streak_of_nan_steps_stops_the_run_keeping_the_last_good_state(tiny_encoder, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MTADV_FAULT", "nan_loss@3")  # steps 4, 5, 6, ... have a NaN loss
    out = tmp_path / "run"
    argv = train_args(tiny_encoder, out, "--max_steps", "20", "--save_steps", "1", "--max_skipped_steps", "3")
    assert run_train(argv) == 2
    msg = _error(capsys)
    assert "NaN/inf in 3 optimizer steps in a row" in msg and "--max_skipped_steps 3" in msg
    assert "--learning_rate" in msg and str(latest_checkpoint(out)) in msg
    assert not (out / "results.json").exists()
    last = latest_checkpoint(out)
    state = json.loads((last / "training_state" / "trainer_state.json").read_text())["state"]
    assert state["step"] == 5 and state["skipped_steps"] == 2  # the third skip stopped the run
    weights = load_file(str(last / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())


# ---------------------------------------------------------------- a full disk during a save


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(tiny_encoder, tmp_path, monkeypatch, capsys):
    from mtadv.checkpoint import load_checkpoint

    monkeypatch.setenv("MTADV_FAULT", "enospc_in_save@3")
    out = tmp_path / "run"
    assert run_train(train_args(tiny_encoder, out, "--max_steps", "6", "--save_steps", "1")) == 2
    msg = _error(capsys)
    assert "No space left on device" in msg and "checkpoint-3" in msg
    assert f"previous checkpoint {out / 'checkpoint-2'} is intact" in msg and "rerun the same command" in msg
    assert [s for s, _ in checkpoints(out)] == [1, 2]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # the temp dir was removed
    load_checkpoint(str(out / "checkpoint-2"))
    monkeypatch.delenv("MTADV_FAULT")
    assert run_train(train_args(tiny_encoder, out, "--max_steps", "6", "--save_steps", "1")) == 0  # resumes


# ---------------------------------------------------------------- output_dir identity, --resume


@pytest.fixture
def finished_run(tiny_encoder, tmp_path) -> Path:
    out = tmp_path / "run"
    assert run_train(train_args(tiny_encoder, out, "--max_steps", "2", tasks="rte")) == 0
    return out


def _snapshot(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("*")}


@pytest.mark.parametrize(
    "change,expected",
    [
        (["--tasks", "rte,stsb"], "--tasks: 'rte' there, 'rte,stsb' here"),
        (["--learning_rate", "1e-4"], "--learning_rate: 5e-05 there, 0.0001 here"),
        (["--resume", "--adv", "fgm"], "cannot resume"),
    ],
    ids=["other-tasks", "other-lr", "resume-other-method"],
)
def test_an_output_dir_holding_a_different_run_is_refused(change, expected, finished_run, tiny_encoder, capsys):
    before = _snapshot(finished_run)
    assert run_train([*train_args(tiny_encoder, finished_run, "--max_steps", "2", tasks="rte"), *change]) == 2
    msg = _error(capsys)
    assert expected in msg and "--overwrite_output_dir" in msg and str(finished_run) in msg
    assert _snapshot(finished_run) == before  # nothing touched


def test_resuming_with_another_model_is_refused(finished_run, tmp_path, capsys):
    from conftest import build_tiny_encoder

    other = build_tiny_encoder(tmp_path / "other-encoder", seed=1)
    assert run_train([*train_args(other, finished_run, "--max_steps", "2", tasks="rte"), "--resume"]) == 2
    assert "--init_checkpoint" in _error(capsys)


def test_overwrite_output_dir_replaces_the_other_run(finished_run, tiny_encoder):
    argv = train_args(tiny_encoder, finished_run, "--max_steps", "1", "--overwrite_output_dir", tasks="rte,stsb")
    assert run_train(argv) == 0
    assert json.loads((finished_run / "run_config.json").read_text())["train"]["tasks"] == "rte,stsb"
    assert [s for s, _ in checkpoints(finished_run)] == [1]


def test_resume_needs_a_checkpoint(tiny_encoder, tmp_path, capsys):
    assert run_train([*train_args(tiny_encoder, tmp_path / "run", "--max_steps", "1"), "--resume"]) == 2
    assert "--resume" in _error(capsys)
    assert not (tmp_path / "run").exists()


def test_a_directory_with_unidentified_run_files_is_refused(tiny_encoder, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text("{}")
    assert run_train(train_args(tiny_encoder, out, "--max_steps", "1")) == 2
    assert "run_config.json" in _error(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]


# ---------------------------------------------------------------- untrusted checkpoints


class _RunsCode:
    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def test_a_checkpoint_with_a_code_running_pickle_is_refused(finished_run, tiny_encoder, tmp_path, capsys):
    sentinel = tmp_path / "pwned"
    optimizer_file = latest_checkpoint(finished_run) / "training_state" / "optimizer.pt"
    torch.save({"optimizer": _RunsCode(sentinel)}, optimizer_file)
    assert run_train(train_args(tiny_encoder, finished_run, "--max_steps", "2", tasks="rte")) == 2
    msg = _error(capsys)
    assert str(optimizer_file) in msg and "refused to load" in msg
    assert not sentinel.exists()  # nothing was executed


def test_remote_code_in_a_model_directory_runs_only_with_the_flag(tiny_encoder, tmp_path):
    from mtadv.checkpoint import load_encoder

    model = tmp_path / "model-with-code"
    shutil.copytree(tiny_encoder, model)
    sentinel = tmp_path / "code-ran"
    (model / "evil.py").write_text(f"import pathlib\npathlib.Path({str(sentinel)!r}).touch()\n")
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.Config", "AutoModel": "evil.Model"}
    (model / "config.json").write_text(json.dumps(config))
    assert run_train(train_args(model, tmp_path / "run", "--max_steps", "1", tasks="rte")) == 0
    assert not sentinel.exists()  # the built-in BERT class was used; the repository's code never ran
    with pytest.raises(Exception):  # noqa: B017 (evil.py defines no classes; importing it is the point)
        load_encoder(str(model), trust_remote_code=True)
    assert sentinel.exists()  # ... and the flag is what lets it run


def test_every_load_in_the_code_is_safe():
    """No unpickling without weights_only=True, no unsafe YAML, no hard-coded trust_remote_code=True."""
    sources = [*REPO.glob("*.py"), *(REPO / "mtadv").rglob("*.py"), *(REPO / "data_utils").rglob("*.py")]
    sources += [*(REPO / "benchmarks").rglob("*.py")]
    problems = []
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in m.group(1):
                problems.append(f"{path}: {m.group(0)}")
        problems += [f"{path}: {p}" for p in re.findall(r"yaml\.(?:unsafe_)?load\(|pickle\.loads?\(", text)]
        problems += [f"{path}: trust_remote_code=True" for _ in re.findall(r"trust_remote_code=True", text)]
    assert not problems, problems


# ---------------------------------------------------------------- SIGTERM / SIGINT from outside


@pytest.mark.integration
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_checkpoints_and_exits_cleanly(signum, tiny_encoder, tmp_path):
    out = tmp_path / "run"
    argv = train_args(tiny_encoder, out, "--max_steps", "100000", "--save_total_limit", "0")
    log = tmp_path / "run.log"
    proc = multiprocessing.get_context("fork").Process(target=_child, args=(argv, None, str(log)))
    proc.start()
    history = out / "history.jsonl"
    # The file is created when the run starts, before the signal handlers are in place; its first
    # line is step 1's log, written inside them. Signalling on the empty file raced with setup.
    while proc.is_alive() and not (history.is_file() and history.stat().st_size > 0):
        time.sleep(0.2)
    os.kill(proc.pid, signum)
    proc.join()
    assert proc.exitcode == 128 + signum
    text = log.read_text()
    assert "Traceback" not in text
    name = signal.Signals(signum).name
    match = re.search(rf"stopped: received {name}: saved a checkpoint to (\S+); rerun the same command", text)
    assert match, text[-2000:]
    ckpt = Path(match.group(1))
    assert ckpt == latest_checkpoint(out)
    state = json.loads((ckpt / "training_state" / "trainer_state.json").read_text())["state"]
    assert ckpt.name == f"checkpoint-{state['step']}" and 0 < state["step"] < 100000


def test_the_saved_tokenizer_does_not_depend_on_the_last_encoding_call(tiny_encoder, tmp_path):
    """A warm tokenization cache makes no encoding call before the save, a cold one does: same files."""
    from transformers import AutoTokenizer

    from mtadv.checkpoint import save_tokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    tokenizer.backend_tokenizer.enable_padding(length=16)  # as a model's own tokenizer.json may ship
    save_tokenizer(tokenizer, tmp_path / "warm")
    tokenizer("a sentence", "and another", truncation=True, max_length=8)
    save_tokenizer(tokenizer, tmp_path / "cold")
    warm, cold = ((tmp_path / d / "tokenizer.json").read_bytes() for d in ("warm", "cold"))
    assert warm == cold
    assert json.loads(warm)["padding"] is None and json.loads(warm)["truncation"] is None
    # encoding still pads and truncates as asked
    assert len(tokenizer("a b c d e f g h i j", truncation=True, max_length=6)["input_ids"]) == 6
