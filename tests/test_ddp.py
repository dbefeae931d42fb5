"""DDP on CPU (gloo): two processes compute the same loss and gradients as one process.

Each rank gets a disjoint half (indices[rank::2]) of every global batch. DDP averages the ranks'
gradients, which equals the gradient of the global batch when both halves are the same size.

Two references, both single-process and built by the same `build_trainer`:
- "accumulated": the global batch as two micro-batches (the two halves), each started from the
  RNG state the ranks start from, so dropout masks and adversarial noise are drawn exactly as on
  the ranks. This works with dropout on and for every regularizer, random ones included.
- "global batch": one forward over the whole global batch. Random draws depend on the batch
  shape, so this comparison uses an encoder with dropout 0 and no regularizer.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from training_runs import REPO, history, train_args

from mtadv.adversarial import ADV_METHODS

pytestmark = pytest.mark.integration
WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _build(argv: list[str]):
    from mtadv.build import build_trainer
    from mtadv.config import build_parser, config_from_args

    return build_trainer(config_from_args(build_parser("test").parse_args(argv)))


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _rank_main(rank: int, port: int, argv: list[str], result: str) -> None:
    torch.set_num_threads(1)  # a forked child must not use the parent's OpenMP team (libgomp deadlocks)
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    code = 1
    try:
        trainer = _build(argv)
        ((task, batch),) = next(trainer.batches(0, 0))  # this rank's half of the first global batch
        rng = torch.get_rng_state()
        logs, finite = trainer.micro_step(task, batch, 1)  # one backward: DDP all-reduces the gradients
        loss = logs[f"train/{task}/total_loss"]
        torch.save({"task": task, "loss": loss, "rng": rng, "grads": _grads(trainer.model), "batch": batch}, result)
        code = 0
    finally:
        os._exit(code)


def _run_ranks(argv: list[str], tmp: Path) -> list[dict]:
    port, ctx = _free_port(), multiprocessing.get_context("fork")
    files = [tmp / f"rank{r}.pt" for r in range(WORLD)]
    procs = [ctx.Process(target=_rank_main, args=(r, port, argv, str(files[r]))) for r in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0] * WORLD
    return [torch.load(f, weights_only=True) for f in files]


def _halves(batch: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """indices[r::2] of the global batch, trimmed to their own longest row as a rank pads them."""
    halves = []
    for r in range(WORLD):
        half = {k: v[r::WORLD] for k, v in batch.items()}
        t = int(half["attention_mask"].sum(1).max())
        halves.append({k: v[:, :t] if v.dim() == 2 else v for k, v in half.items()})
    return halves


def _assert_close(ddp: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> None:
    assert ddp.keys() == ref.keys()
    for name in ref:
        torch.testing.assert_close(ddp[name], ref[name], rtol=1e-4, atol=1e-6, msg=name)


CASES = {
    "plain": [],
    "smart+teacher": ["--smart"],  # the teacher replays the clean forward's dropout masks on each rank
    "smart+eval-mode teacher": ["--smart", "--bregman_replay_dropout", "false"],
    **{m: ["--adv", m] for m in ADV_METHODS.names()},
    # the embedding space's hook and per-token scale on each rank
    "smart, embedding space": ["--smart", "--adv_space", "embedding", "--adv_eps", "0.05", "--adv_lr", "0.05"],
    "pgd, embedding space": ["--adv", "pgd", "--adv_space", "embedding"],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_ranks_match_one_process_accumulating_the_same_global_batch(case, tiny_encoder, tmp_path):
    argv = train_args(tiny_encoder, tmp_path / "run", "--max_steps", "2", *CASES[case])
    ranks = _run_ranks(argv, tmp_path)
    assert torch.equal(ranks[0]["rng"], ranks[1]["rng"])  # every rank starts from the same RNG state
    ref = _build(train_args(tiny_encoder, tmp_path / "ref", "--max_steps", "2", *CASES[case]))
    ((task, batch),) = next(ref.batches(0, 0))  # the whole global batch
    assert task == ranks[0]["task"] == ranks[1]["task"]
    ref_losses = []
    for r, half in enumerate(_halves(batch)):
        assert all(torch.equal(half[k], ranks[r]["batch"][k]) for k in half)  # rank r got exactly this half
        torch.set_rng_state(ranks[r]["rng"])
        logs, _ = ref.micro_step(task, half, WORLD)  # grad accumulation: mean of the halves' gradients
        ref_losses.append(logs[f"train/{task}/total_loss"])
    assert [rk["loss"] for rk in ranks] == pytest.approx(ref_losses, rel=1e-5, abs=1e-7)
    _assert_close(ranks[0]["grads"], _grads(ref.model))
    _assert_close(ranks[1]["grads"], ranks[0]["grads"])


def test_two_ranks_match_one_forward_over_the_global_batch(tiny_encoder, tmp_path):
    encoder = tmp_path / "no-dropout"
    shutil.copytree(tiny_encoder, encoder)
    config = json.loads((encoder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (encoder / "config.json").write_text(json.dumps(config))
    extra = ("--max_steps", "2", "--head_dropout", "0")
    ranks = _run_ranks(train_args(encoder, tmp_path / "run", *extra), tmp_path)
    ref = _build(train_args(encoder, tmp_path / "ref", *extra))
    ((task, batch),) = next(ref.batches(0, 0))
    logs, _ = ref.micro_step(task, batch, 1)
    assert sum(rk["loss"] for rk in ranks) / WORLD == pytest.approx(logs[f"train/{task}/loss"], rel=1e-5)
    _assert_close(ranks[0]["grads"], _grads(ref.model))


def test_torchrun_trains_evaluates_sharded_and_only_rank0_writes(tiny_encoder, tmp_path):
    from mtadv.checkpoint import load_checkpoint
    from mtadv.trainer import Trainer

    out = tmp_path / "run"
    argv = train_args(tiny_encoder, out, "--max_steps", "4", "--save_steps", "2", "--max_eval_samples", "33")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port())]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*cmd, str(REPO / "train.py"), *argv], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("Best checkpoint") == 1  # rank 0 reports, rank 1 stays quiet
    steps = [h["step"] for h in history(out) if h["kind"] == "train"]
    assert steps == [1, 2, 3, 4]  # logged once, by rank 0
    assert len(list((out / "tb").iterdir())) == 1
    results = json.loads((out / "results.json").read_text())
    # the gathered evaluation (33 rows: uneven shards) equals a single-process evaluation of the same weights
    model, _, _, _ = load_checkpoint(str(out / "checkpoint-4"))
    single = _build(train_args(tiny_encoder, tmp_path / "single", "--max_steps", "4", "--max_eval_samples", "33"))
    single.model.load_state_dict(model.state_dict())
    expected = Trainer.evaluate(single)
    for task, splits in expected.items():
        for split, metrics in splits.items():
            assert results["final"][task][split] == pytest.approx(metrics, abs=1e-3)
