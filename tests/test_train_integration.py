"""End to end on the GLUE sample with a tiny random encoder: two tasks (classification and
regression), the run's outputs, and a checkpoint that reloads to identical predictions."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel

from mtadv.build import build_trainer
from mtadv.checkpoint import load_checkpoint
from mtadv.cli import run_train
from mtadv.config import RunConfig, TrainConfig, check_config
from mtadv.data_utils.collate import TaskCollator
from mtadv.data_utils.tokenize import tokenize_split
from mtadv.evaluate import predict_split

pytestmark = pytest.mark.integration


def run_args(encoder: Path, out: Path, **extra) -> dict:
    args = {
        "tasks": "rte,stsb",
        "init_checkpoint": str(encoder),
        "output_dir": str(out),
        "max_steps": 6,
        "max_train_samples": 32,
        "max_eval_samples": 16,
        "batch_size": 8,
        "eval_batch_size": 16,
        "max_seq_len": 64,
        "device": "cpu",
        "log_steps": 1,
        **extra,
    }
    return args


def test_cli_run_writes_results_tensorboard_and_history(tiny_encoder, tmp_path):
    out = tmp_path / "run"
    args = run_args(tiny_encoder, out, eval_steps=3, save_steps=4)
    assert run_train([x for k, v in args.items() for x in (f"--{k}", str(v))]) == 0

    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"results", "final", "best", "run"}
    for key in ("results", "final"):
        assert set(results[key]) == {"rte", "stsb"}
        assert set(results[key]["rte"]["dev"]) == {"accuracy", "top_class_share"}
        assert set(results[key]["stsb"]["dev"]) == {"pearson", "spearman"}
    assert results["best"]["metric"] == "avg" and results["best"]["step"] in (3, 6)
    assert results["run"]["steps"] == 6 and results["run"]["skipped_steps"] == 0
    assert set(results["run"]["truncated_examples"]) == {"rte", "stsb"}

    assert list((out / "tb").glob("events.out.tfevents.*"))
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    train = [h for h in history if h["kind"] == "train"]
    assert [h["step"] for h in train] == [1, 2, 3, 4, 5, 6]
    assert {"train/rte/loss", "train/stsb/loss"} <= {k for h in train for k in h}  # per-task losses
    assert all("train/lr" in h and "train/grad_norm" in h for h in train)
    evals = [h for h in history if h["kind"] == "eval"]
    assert [h["step"] for h in evals] == [3, 6] and "dev/stsb/dev/pearson" in evals[0]

    for ckpt in ("best", "checkpoint-4"):
        files = {p.name for p in (out / ckpt).iterdir()}
        assert {"model.safetensors", "config.json", "heads.safetensors", "mtadv.json"} <= files
        assert {"task_defs.yml", "run_config.json", "tokenizer.json"} <= files
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary directories left
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((out / "best").stat().st_mode) == 0o777 & ~umask  # not mkdtemp's 0700
    assert stat.S_IMODE((out / "best" / "model.safetensors").stat().st_mode) == 0o666 & ~umask


def test_checkpoint_reloads_to_identical_predictions(tiny_encoder, tmp_path):
    cfg = RunConfig(train=TrainConfig(**run_args(tiny_encoder, tmp_path / "run")))
    trainer = build_trainer(cfg)
    trainer.train()  # max_steps < one epoch: the only evaluation is the last, so best/ is the final model
    best = tmp_path / "run" / "best"

    model, tokenizer, tasks, run_config = load_checkpoint(str(best))
    assert run_config == check_config(cfg).to_dict() and {"rte", "stsb"} <= set(tasks)  # data_dir made absolute
    assert os.path.isabs(run_config["train"]["data_dir"])
    assert model.task_to_head == {"rte": "rte", "stsb": "stsb"}
    for (task, split), data in trainer.eval_splits.items():
        again = tokenize_split(data.raw, tokenizer, cfg.train.max_seq_len, str(tmp_path / "c2"), (task, split))
        assert list(again.data["input_ids"]) == list(data.data["input_ids"])  # the saved tokenizer is the same
        fresh = predict_split(trainer.model, tasks[task], data, trainer.collators[task], 16, torch.device("cpu"))
        reloaded = predict_split(model, tasks[task], again, TaskCollator(tokenizer), 16, torch.device("cpu"))
        np.testing.assert_array_equal(reloaded.outputs, fresh.outputs)
        np.testing.assert_array_equal(reloaded.example_idx, fresh.example_idx)
        assert fresh.outputs.shape == ((16, 2) if task == "rte" else (16,))

    encoder = AutoModel.from_pretrained(best)  # any transformers user can load the fine-tuned encoder
    trained = trainer.model.encoder.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in encoder.state_dict().items())
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["results"] == saved["final"]  # best/ is the final model, as assumed above


def test_second_run_in_a_new_process_skips_tokenization(tiny_encoder, tmp_path, monkeypatch):
    """The cache key must be stable across processes (file identity, tokenizer, max length)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("MTADV_CACHE", str(cache))
    args = run_args(tiny_encoder, tmp_path / "first", tasks="rte", max_steps=1)
    flags = [x for k, v in args.items() for x in (f"--{k}", str(v))]
    assert run_train(flags) == 0
    cached = sorted(p.name for p in cache.iterdir())
    assert len(cached) == 2  # rte train and dev

    flags[flags.index("--output_dir") + 1] = str(tmp_path / "second")
    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, str(repo / "train.py"), *flags], capture_output=True, text=True, cwd=repo, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "tokenizing" not in done.stderr  # datasets' map progress bar: shown only when it runs
    assert sorted(p.name for p in cache.iterdir()) == cached
