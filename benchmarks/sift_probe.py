"""How big is SiFT's term at its defaults, and along which setting does it grow?

SiFT (docs/methods/sift.md) starts from δ_0 = clamp(N(0, σ²), ±2σ) and takes K steps of
η·g/(1e-6 + ‖g‖∞) per token, with no radius. At the official code's σ = 1e-2 and η = 1e-4 the step
hardly moves δ from its random start, and a random δ changes the output only to second order. This
probe fine-tunes MiniLM on MRPC for a few plain steps (so the head is not random), then measures on
fixed MRPC batches, in fp32 and in the embedding space (σ, η relative to each token's RMS), the term
D = sym_kl(f(x̄ + δ), f(x̄)) and λ·D against the task loss, for:
- the defaults, with the clean forward's dropout masks replayed (mtadv's default) or fresh (the
  official code's forwards), and σ = η = 0 with fresh masks (dropout noise alone);
- the step η at several values (σ = 1e-2): the adversarial direction;
- the start σ at several values (η = 1e-4): random noise alone.

    python benchmarks/sift_probe.py --glue_dir path/to/glue
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import torch
from smart_eps_probe import add_probe_args, mean_term, trained_probe

from mtadv.adversarial import ADV_METHODS

REPO = Path(__file__).resolve().parent.parent
SIFT = ADV_METHODS.get("sift")

# (label, overrides of SiFT's defaults): each row changes one setting
ROWS = [("defaults, dropout replayed", {})]
ROWS += [("defaults, fresh dropout (the code's)", {"adv_replay_dropout": False})]
ROWS += [
    ("σ = η = 0, fresh dropout (dropout alone)", {"adv_replay_dropout": False, "adv_init_mag": 0.0, "adv_lr": 0.0})
]
ROWS += [(f"η = {lr:g}", {"adv_lr": lr}) for lr in (1e-3, 1e-2, 3e-2, 1e-1)]
ROWS += [(f"σ = {s:g}", {"adv_init_mag": s}) for s in (3e-2, 1e-1)]


def term_for(trainer, groups, overrides: dict) -> tuple[float, float]:
    """Mean D (before λ) and mean task loss over the batches, SiFT at its defaults plus `overrides`."""
    settings = {"adv": "sift", "adv_replay_dropout": True, **SIFT.defaults, **overrides}
    cfg = dataclasses.replace(trainer.cfg.adv, **settings)
    return mean_term(trainer, groups, SIFT(cfg), cfg.adv_space)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_probe_args(p)
    args = p.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        trainer, probe = trained_probe(args, tmp)
        print_table(trainer, probe, args.train_steps)


def print_table(trainer, probe, train_steps: int) -> None:
    lam = SIFT.defaults["adv_weight"]
    print(f"after {train_steps} plain steps on MRPC (batch 16); SiFT, K = 1, embedding space, fp32, λ = {lam:g}")
    print("| setting | max ‖δ‖∞ per token | D | λ·D / task loss |")
    print("|---|---|---|---|")
    for label, overrides in ROWS:
        sigma = overrides.get("adv_init_mag", SIFT.defaults["adv_init_mag"])
        lr = overrides.get("adv_lr", SIFT.defaults["adv_lr"])
        term, task = term_for(trainer, probe, overrides)
        print(f"| {label} | {2 * sigma + lr:.3g} | {term:.2e} | {lam * term / task:.1e} |")


if __name__ == "__main__":
    main()
