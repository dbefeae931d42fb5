"""How far does each method's training step, at its defaults, move away from the plain step?

A method that ends at a constant prediction where plain fine-tuning learns either pushes the weights
somewhere else from the first step (its gradient points away from the plain gradient, or is much
larger), or starts like plain and drifts later. This probe tells the two apart at the start of a
run. It fine-tunes MiniLM on one task for a few plain steps (so the head is not random), then, on
fixed batches, runs the trainer's own micro-step once plainly and once per method at its defaults
(`--adv NAME` alone), with the same dropout masks, and compares the weight gradients:

- `loss`: what the step backpropagates (the clean loss plus the term, or the adversarial loss
  alone for PGD, FreeAT, FreeLB and AWP), against the clean loss;
- `cos`: the cosine between the method's weight gradient and the plain one (1: the same direction);
- `|g| / |g_plain|`: their norm ratio, before gradient clipping.

Means over the batches. The Bregman teacher is left out: at the start of a run θ̃ = θ and its term
is zero by construction (`teacher_probe.py` measures it later in a run). ALUM is MLM-only.

    python benchmarks/step_agreement.py --task rte --glue_dir path/to/glue
    python benchmarks/step_agreement.py --task rte --methods fgm,pgd --extra="--adv_space embedding --adv_eps 0.03"
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
from smart_eps_probe import add_probe_args, probe_argv, trained_probe

from mtadv.adversarial import ADV_METHODS, build_regularizers
from mtadv.adversarial.spaces import get_space, task_space
from mtadv.config import build_parser, config_from_args

REPO = Path(__file__).resolve().parent.parent
SKIPPED = {"bregman", "alum"}


def step_gradient(trainer, name: str, batch: dict, seed: int) -> tuple[torch.Tensor, float]:
    """The flattened weight gradient of one trainer micro-step (dropout drawn from `seed`) and the
    loss it backpropagated."""
    trainer.model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    logs, _ = trainer.micro_step(name, batch, 1)
    grads = [p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None]
    return torch.cat(grads), logs[f"train/{name}/total_loss"]


def use_method(trainer, argv: list[str], method: str | None) -> None:
    """Point the trainer's regularizers (and each task's perturbation space) at `method`'s defaults."""
    cfg = config_from_args(build_parser("probe").parse_args(argv + (["--adv", method] if method else [])))
    trainer.regularizers = build_regularizers(cfg, trainer.tasks)
    trainer.spaces = {t: get_space(task_space(trainer.regularizers.get(t, []))) for t in trainer.tasks}


def agreement_rows(
    trainer, argv: list[str], probe: list, methods: list[str], extra: list[str]
) -> list[tuple[str, float, float, float]]:
    """(method, mean loss, mean cosine, mean norm ratio) per method (its defaults, then `extra`),
    against the plain step."""
    batches = [(name, batch) for group in probe for name, batch in group]
    use_method(trainer, argv, None)
    plain = [step_gradient(trainer, name, batch, 1000 + i) for i, (name, batch) in enumerate(batches)]
    rows = [("plain", statistics.fmean(loss for _, loss in plain), 1.0, 1.0)]
    for method in methods:
        use_method(trainer, argv + extra, method)
        losses, cosines, ratios = [], [], []
        for i, (name, batch) in enumerate(batches):
            grad, loss = step_gradient(trainer, name, batch, 1000 + i)
            g_plain = plain[i][0]
            losses.append(loss)
            cosines.append(torch.nn.functional.cosine_similarity(grad, g_plain, dim=0).item())
            ratios.append((grad.norm() / g_plain.norm()).item())
        rows.append((method, statistics.fmean(losses), statistics.fmean(cosines), statistics.fmean(ratios)))
    trainer.model.zero_grad(set_to_none=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="rte")
    add_probe_args(p)
    p.add_argument("--methods", default="", help="comma-separated (default: every registered method but the skipped)")
    p.add_argument("--extra", default="", help="more train.py flags for every method, e.g. a radius")
    args = p.parse_args()
    methods = args.methods.split(",") if args.methods else [m for m in ADV_METHODS.names() if m not in SKIPPED]
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        trainer, probe = trained_probe(args, tmp, task=args.task)
        argv = probe_argv(args, tmp, args.task)
        rows = agreement_rows(trainer, argv, probe, methods, args.extra.split())
    print(
        f"{args.task}: after {args.train_steps} plain steps (batch 16), {args.batches} batches, each method "
        + (f"at its defaults plus {args.extra}" if args.extra else "at its defaults")
    )
    print("| method | loss backpropagated | cos with plain gradient | \\|g\\| / \\|g_plain\\| |")
    print("|---|---|---|---|")
    for method, loss, cos, ratio in rows:
        print(f"| {method} | {loss:.4f} | {cos:.4f} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
