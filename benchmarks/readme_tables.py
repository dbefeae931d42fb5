"""Regenerate the results tables in README.md and benchmarks/README.md from the full-data records.

The records are benchmarks/results/glue_full/*.json, one per run of benchmarks/glue_full.py (id,
mode, tasks, config, seed, tag "_full", flags, wall_s, result, train_stats). A task's score is its
GLUE score on the dev split: RTE accuracy, MRPC the mean of accuracy and F1, CoLA MCC, STS-B the
mean of Pearson and Spearman. Every effect is read as a per-seed paired difference against plain
(same seed: same data order and initial head) with a paired t-test's two-sided p-value.

Each `<!-- table:NAME -->` ... `<!-- /table:NAME -->` block is replaced by its table:

    README.md              headline      single-task runs: one row per config, GLUE score per task
                           robust        single-task runs: one row per config, per task the clean and
                                         attacked scores (plain) or their paired differences against it
    benchmarks/README.md   robust-paired single-task runs: per config, the clean and the attacked GLUE
                                         score per task (the record's `robust` key), against plain
                           full-scores   every mode, config and task: each metric, GLUE score, wall time
                           full-paired   every mode, task and config: per-seed differences against plain
                           full-robust   every config, task and attack: attacked metrics, success rate
                           last-epoch    single-task runs: per config and task, how many runs scored best
                                         after their last epoch (the dev score still rising when training stopped)
                           teacher       runs with --eval_with_teacher (results/glue_full_extra/): per config
                                         and task, the EMA teacher at the student's best step against the
                                         student and against plain (the protocol's record, same seed)
                           long-runs     runs longer than 3 epochs (results/glue_full_extra/, --extra=--epochs=N):
                                         the dev score after each epoch, the best, and the best against plain's
                                         run of the same task, seed and length

A task's robust score is its GLUE score computed from the dev metrics under the attack.

    python benchmarks/readme_tables.py           # rewrite both files in place
    python benchmarks/readme_tables.py --check   # exit 1 when either file is out of date
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

from glue_small import paired_pvalue

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "glue_full"
EXTRA_RESULTS = REPO / "benchmarks" / "results" / "glue_full_extra"  # off-protocol runs (`--extra` flags)
BASE = "plain"
TASKS = ["rte", "mrpc", "cola", "stsb"]
# task -> the dev metrics whose mean is the task's GLUE score
GLUE_SCORE = {"rte": ["accuracy"], "mrpc": ["accuracy", "f1"], "cola": ["mcc"], "stsb": ["pearson", "spearman"]}
TITLE = {"rte": "RTE (accuracy)", "mrpc": "MRPC (acc/F1)", "cola": "CoLA (MCC)", "stsb": "STS-B (Pearson/Spearman)"}
EMPTY = "—"

Scores = dict[tuple[str, str, str], dict[int, float]]  # (mode, config, task) -> seed -> GLUE score


def load_records(results: Path) -> list[dict]:
    """Every record in `results` (none when the folder does not exist yet)."""
    return [json.loads(f.read_text(encoding="utf-8")) for f in sorted(results.glob("*.json"))]


def dev_metrics(result: dict, task: str) -> dict[str, float] | None:
    """The dev metrics of `task` in a results.json-shaped dict, None when it does not hold them all."""
    dev = result.get("results", {}).get(task, {}).get("dev", {})
    return dev if all(isinstance(dev.get(m), (int, float)) for m in GLUE_SCORE[task]) else None


def task_metrics(rec: dict, task: str, attack: str = "") -> dict[str, float] | None:
    """The dev metrics of `task` in a record (under `attack` when given), None when the record
    does not hold them all."""
    return dev_metrics(rec.get("robust", {}).get(attack, {}) if attack else rec.get("result", {}), task)


def metrics_glue_score(task: str, metrics: dict[str, float]) -> float:
    """The task's GLUE score from its dev metrics (MRPC: mean of accuracy and F1, ...)."""
    return statistics.fmean(metrics[m] for m in GLUE_SCORE[task])


def glue_score(rec: dict, task: str, attack: str = "") -> float | None:
    dev = task_metrics(rec, task, attack)
    return None if dev is None else metrics_glue_score(task, dev)


def scores(records: list[dict], attack: str = "") -> Scores:
    """(mode, config, task) -> seed -> GLUE score, clean or under `attack`."""
    out: Scores = {}
    for rec in records:
        for task in rec["tasks"]:
            score = glue_score(rec, task, attack) if task in GLUE_SCORE else None
            if score is not None:
                out.setdefault((rec["mode"], rec["config"], task), {})[rec["seed"]] = score
    return out


def configs_of(records: list[dict], mode: str | None = None) -> list[str]:
    """The configs with records (of `mode` when given), plain first, then by name."""
    names = {r["config"] for r in records if mode is None or r["mode"] == mode}
    return sorted(names, key=lambda c: (c != BASE, c))


def modes_of(records: list[dict]) -> list[str]:
    return sorted({r["mode"] for r in records}, key=lambda m: (m != "single", m))


def mean_sd(values: list[float], sign: str = "") -> str:
    """'58.1 ± 1.2 (n=3)', '58.1 (n=1)' or '—'; sign="+" for differences ('+0.4 ± 1.2 (n=3)')."""
    if not values:
        return EMPTY
    if len(values) == 1:
        return f"{values[0]:{sign}.1f} (n=1)"
    return f"{statistics.fmean(values):{sign}.1f} ± {statistics.stdev(values):.1f} (n={len(values)})"


def paired(base: dict[int, float], other: dict[int, float]) -> tuple[list[int], list[float], float | None]:
    """Seeds both have, the differences other − base seed by seed, and the paired t-test's p-value
    (None with fewer than 2 seeds, or when every difference is the same)."""
    seeds = sorted(set(base) & set(other))
    diffs = [other[s] - base[s] for s in seeds]
    return seeds, diffs, paired_pvalue([base[s] for s in seeds], [other[s] for s in seeds])


def diff_text(base: dict[int, float], other: dict[int, float]) -> str:
    """'Δ +0.4 ± 0.5, p = 0.31 (n=3)' against plain; '' when no seed is shared."""
    seeds, diffs, p = paired(base, other)
    if not seeds:
        return ""
    if len(seeds) == 1:
        return f"Δ {diffs[0]:+.1f} (n=1)"
    p_text = EMPTY if p is None else f"{p:.2f}"
    return f"Δ {statistics.fmean(diffs):+.1f} ± {statistics.stdev(diffs):.1f}, p = {p_text} (n={len(seeds)})"


def averages(sc: Scores, mode: str, config: str) -> dict[int, float]:
    """seed -> mean of the four tasks' GLUE scores, for the seeds that have all four."""
    cells = [sc.get((mode, config, t), {}) for t in TASKS]
    seeds = set.intersection(*(set(c) for c in cells))
    return {s: statistics.fmean(c[s] for c in cells) for s in seeds}


def wall_text(records: list[dict], mode: str, config: str) -> str:
    walls = [r["wall_s"] for r in records if r["mode"] == mode and r["config"] == config and "wall_s" in r]
    return f"{statistics.fmean(walls) / 60:.1f} min" if walls else EMPTY


def score_cell(sc: Scores, key: tuple[str, str, str], base_key: tuple[str, str, str]) -> str:
    text = mean_sd(list(sc.get(key, {}).values()))
    if key[1] != BASE and text != EMPTY:
        diff = diff_text(sc.get(base_key, {}), sc[key])
        text += f"; {diff}" if diff else ""
    return text


def single_task_cells(sc: Scores, config: str) -> list[str]:
    """A config's single-task cells: each task's score, then the four-task mean, each with its paired
    difference against plain."""
    cells = [score_cell(sc, ("single", config, t), ("single", BASE, t)) for t in TASKS]
    avg, base_avg = averages(sc, "single", config), averages(sc, "single", BASE)
    avg_text = mean_sd(list(avg.values()))
    if config != BASE and avg and (diff := diff_text(base_avg, avg)):
        avg_text += f"; {diff}"
    return [*cells, avg_text]


def typed_equivalent(config: str) -> str | None:
    """What a user types for the same run when a named config pins only its method's defaults
    ('pgd_emb_eps0.003' -> '--adv pgd'), by resolving both flag lists as train.py does; else None."""
    from glue_full import CONFIGS

    flags = CONFIGS.get(config, [])
    if "--smart" in flags:
        typed = ["--smart"]
    elif "--adv" in flags:
        typed = flags[: flags.index("--adv") + 2]
    else:
        return None
    return " ".join(typed) if typed != flags and resolved(flags) == resolved(typed) else None


def resolved(flags: list[str]) -> dict:
    """Every setting train.py would run with under `flags` (which of them were typed aside)."""
    from mtadv.config import build_parser, config_from_args

    cfg = config_from_args(build_parser("").parse_args(["--tasks", "rte", *flags])).to_dict()
    cfg.pop("adv_explicit")
    return cfg


def row_label(config: str) -> str:
    """The config's name, with the flags a user types for it when it only pins their defaults."""
    typed = typed_equivalent(config)
    return f"{config} (= `{typed}`)" if typed else config


def user_facing(config: str) -> bool:
    """Whether a user gets this config by typing train.py alone, `--smart` or `--adv NAME`: the README's
    rows. The calibration cells (each method at other strengths) are benchmarks/README.md's."""
    from mtadv.adversarial import ADV_METHODS

    return config in (BASE, "smart") or config in ADV_METHODS or typed_equivalent(config) is not None


def headline_table(records: list[dict]) -> str:
    """The README's table: single-task runs of the configs a user types, one row per config, the GLUE
    score of each task."""
    single = [r for r in records if r["mode"] == "single" and user_facing(r["config"])]
    sc = scores(single)
    head = [TITLE[t] for t in TASKS]
    lines = ["| config | " + " | ".join(head) + " | mean of 4 | wall per run |", "|---|" + "---|" * (len(TASKS) + 2)]
    for config in configs_of(single) or [BASE]:
        cells = " | ".join(single_task_cells(sc, config))
        lines.append(f"| {row_label(config)} | {cells} | {wall_text(single, 'single', config)} |")
    return "\n".join(lines)


def attacks_of(records: list[dict]) -> list[str]:
    return sorted({a for r in records for a in r.get("robust", {})})


def robust_table(records: list[dict]) -> str:
    """benchmarks/README.md's robustness table: single-task runs, per config the clean score and the score
    under each attack, per task and on the four-task mean, with paired differences against plain."""
    single = [r for r in records if r["mode"] == "single"]
    attacks = attacks_of(single)
    if not attacks:
        return "No record holds robust scores yet."
    head = [TITLE[t].split(" (")[0] for t in TASKS]
    lines = ["| config | scored | " + " | ".join(head) + " | mean of 4 |", "|---|---|" + "---|" * (len(TASKS) + 1)]
    for config in configs_of(single):
        for attack in ["", *attacks]:
            sc = scores(single, attack)
            lines.append(f"| {config} | {attack or 'clean'} | " + " | ".join(single_task_cells(sc, config)) + " |")
    return "\n".join(lines) + "\n\n" + attack_settings_line(single, attacks)


def robust_summary_cell(by_attack: dict[str, Scores], config: str, task: str) -> str:
    """One task's clean / attacked GLUE scores for a config: plain's means, another config's mean
    paired differences against plain ('Δ -1.8 / +0.5 / +0.4 (n=2)'); '—' without robust scores."""
    key, base = ("single", config, task), ("single", BASE, task)
    if not any(by_attack[a].get(key) for a in by_attack if a):
        return EMPTY
    parts, counts = [], []
    for sc in by_attack.values():
        if config == BASE:
            values = list(sc.get(key, {}).values())
        else:
            values = paired(sc.get(base, {}), sc.get(key, {}))[1]
        parts.append(f"{statistics.fmean(values):{'' if config == BASE else '+'}.1f}" if values else EMPTY)
        counts.append(len(values))
    n = str(counts[0]) if len(set(counts)) == 1 else "/".join(map(str, counts))
    return ("" if config == BASE else "Δ ") + " / ".join(parts) + f" (n={n})"


def robust_summary_table(records: list[dict]) -> str:
    """The README's robustness table: single-task runs of the configs a user types, one row per config,
    per task the clean score and the score under each attack (plain), or their mean paired
    differences against plain."""
    single = [r for r in records if r["mode"] == "single" and user_facing(r["config"])]
    attacks = attacks_of(single)
    if not attacks:
        return "No record holds robust scores yet."
    by_attack = {a: scores(single, a) for a in ["", *attacks]}
    scored = " / ".join(["clean", *attacks])
    head = [f"{TITLE[t].split(' (')[0]}: {scored}" for t in TASKS]
    lines = ["| config | " + " | ".join(head) + " |", "|---|" + "---|" * len(TASKS)]
    for config in configs_of(single):
        cells = " | ".join(robust_summary_cell(by_attack, config, t) for t in TASKS)
        lines.append(f"| {row_label(config)} | {cells} |")
    return "\n".join(lines) + "\n\n" + attack_settings_line(single, attacks)


def attack_settings_line(records: list[dict], attacks: list[str]) -> str:
    """'Attack settings: pgd: space embedding, ...; typo: rate 0.1, seed 0.' under a robustness table."""
    return "Attack settings: " + "; ".join(f"{a}: {settings_text(records, a)}" for a in attacks) + "."


# attack -> the recorded settings the tables name
SETTINGS_SHOWN = {
    "pgd": ["attack_space", "attack_norm", "attack_eps", "attack_steps"],
    "typo": ["attack_rate", "attack_seed"],
}


def settings_text(records: list[dict], attack: str) -> str:
    """The attack's settings as recorded ('space embedding, norm linf, ...'), or a note when records
    differ in one of them (the settings of the other attacks, recorded too, do not count)."""
    recorded = [r["robust"][attack]["settings"] for r in records if attack in r.get("robust", {})]
    keys = SETTINGS_SHOWN.get(attack) or sorted({k for s in recorded for k in s if k != "name"})
    found = {json.dumps({k: s.get(k) for k in keys}, sort_keys=True) for s in recorded}
    if len(found) != 1:
        return "mixed settings (see the records)"
    settings = json.loads(found.pop())
    return ", ".join(f"{k.removeprefix('attack_')} {settings[k]}" for k in keys if settings.get(k) is not None)


def full_robust_table(records: list[dict]) -> str:
    """Every mode, config, task and attack: the metrics under attack and the attack success rate."""
    lines = [
        "| mode | config | task | attack | metrics under attack (mean ± std) | success rate |",
        "|---|---|---|---|---|---|",
    ]
    for mode in modes_of(records):
        for config in configs_of(records, mode):
            recs = [r for r in records if r["mode"] == mode and r["config"] == config]
            for task in TASKS:
                for attack in attacks_of(recs):
                    found = [m for r in recs if task in r["tasks"] and (m := task_metrics(r, task, attack))]
                    if not found:
                        continue
                    metrics = ", ".join(f"{m} {mean_sd([d[m] for d in found])}" for m in GLUE_SCORE[task])
                    rates = [d["attack_success_rate"] for d in found if "attack_success_rate" in d]
                    lines.append(f"| {mode} | {config} | {task} | {attack} | {metrics} | {mean_sd(rates)} |")
    if len(lines) == 2:
        lines.append(f"| {EMPTY} | {EMPTY} | {EMPTY} | {EMPTY} | no robust scores yet | {EMPTY} |")
    return "\n".join(lines)


def full_scores_table(records: list[dict]) -> str:
    """Every mode, config and task: each dev metric and the GLUE score (mean ± std), and wall time."""
    lines = ["| mode | config | task | metrics (mean ± std) | GLUE score | wall per run |", "|---|---|---|---|---|---|"]
    sc = scores(records)
    for mode in modes_of(records):
        for config in configs_of(records, mode):
            recs = [r for r in records if r["mode"] == mode and r["config"] == config]
            for task in TASKS:
                found = [m for r in recs if task in r["tasks"] and (m := task_metrics(r, task)) is not None]
                if not found:
                    continue
                metrics = ", ".join(f"{m} {mean_sd([d[m] for d in found])}" for m in GLUE_SCORE[task])
                score = mean_sd(list(sc.get((mode, config, task), {}).values()))
                lines.append(f"| {mode} | {config} | {task} | {metrics} | {score} | {wall_text(recs, mode, config)} |")
    if len(lines) == 2:
        lines.append(f"| {EMPTY} | {EMPTY} | {EMPTY} | no records yet | {EMPTY} | {EMPTY} |")
    return "\n".join(lines)


def full_paired_table(records: list[dict]) -> str:
    """Every mode, task and non-plain config: the GLUE score's differences against plain, seed by seed."""
    lines = ["| mode | task | config − plain | per seed | mean ± std | p (paired t) |", "|---|---|---|---|---|---|"]
    sc = scores(records)
    for mode in modes_of(records):
        for task in [*TASKS, "mean of 4"]:
            for config in configs_of(records, mode):
                if config == BASE:
                    continue
                if task == "mean of 4":
                    base, other = averages(sc, mode, BASE), averages(sc, mode, config)
                else:
                    base, other = sc.get((mode, BASE, task), {}), sc.get((mode, config, task), {})
                seeds, diffs, p = paired(base, other)
                if not seeds:
                    continue
                per_seed = ", ".join(f"s{s} {d:+.1f}" for s, d in zip(seeds, diffs))
                spread = f"{statistics.fmean(diffs):+.1f} ± {statistics.stdev(diffs):.1f}" if len(diffs) > 1 else ""
                p_text = f"{p:.2f}" if p is not None else EMPTY
                lines.append(f"| {mode} | {task} | {config} − plain | {per_seed} | {spread or EMPTY} | {p_text} |")
    if len(lines) == 2:
        lines.append(
            f"| {EMPTY} | {EMPTY} | no config with a seed shared with plain yet | {EMPTY} | {EMPTY} | {EMPTY} |"
        )
    return "\n".join(lines)


def ended_rising(rec: dict) -> bool | None:
    """Whether the run's best checkpoint is its last step: the last epoch's dev score beat every earlier
    epoch's (a tie keeps the earlier checkpoint). None for a record without the steps."""
    result = rec.get("result", {})
    best, last = result.get("best", {}).get("step"), result.get("run", {}).get("steps")
    return None if best is None or last is None else best == last


def last_epoch_table(records: list[dict]) -> str:
    """Single-task runs: per config and task, 'k of n': k runs scored best after their last epoch."""
    single = [r for r in records if r["mode"] == "single" and ended_rising(r) is not None]
    lines = ["| config | " + " | ".join(TITLE[t] for t in TASKS) + " |", "|---|" + "---|" * len(TASKS)]
    for config in configs_of(single):
        cells = []
        for task in TASKS:
            runs = [ended_rising(r) for r in single if r["config"] == config and task in r["tasks"]]
            cells.append(f"{sum(runs)} of {len(runs)}" if runs else EMPTY)
        lines.append(f"| {config} | " + " | ".join(cells) + " |")
    if len(lines) == 2:
        lines.append("| no records yet |" + f" {EMPTY} |" * len(TASKS))
    return "\n".join(lines)


def plain_peaked_table(records: list[dict]) -> str:
    """Single-task runs: per config, its paired differences against plain (same task and seed), pooled
    over tasks and split by whether plain's run had already peaked (its best checkpoint before its last
    step) or was still rising when it stopped: does a method do better where plain has stopped rising?"""
    single = [r for r in records if r["mode"] == "single" and ended_rising(r) is not None]
    sc = scores(single)
    plain_rising = {(r["tasks"][0], r["seed"]): ended_rising(r) for r in single if r["config"] == BASE}
    lines = ["| config | Δ where plain had peaked | Δ where plain was still rising |", "|---|---|---|"]
    for config in configs_of(single):
        if config == BASE:
            continue
        split: dict[bool, list[float]] = {True: [], False: []}
        for task in TASKS:
            seeds, diffs, _ = paired(sc.get(("single", BASE, task), {}), sc.get(("single", config, task), {}))
            for seed, diff in zip(seeds, diffs):
                split[plain_rising[(task, seed)]].append(diff)
        if split[True] or split[False]:
            lines.append(f"| {config} | {mean_sd(split[False], '+')} | {mean_sd(split[True], '+')} |")
    if len(lines) == 2:
        lines.append(f"| no records yet | {EMPTY} | {EMPTY} |")
    return "\n".join(lines)


def teacher_score(rec: dict, task: str) -> float | None:
    """The GLUE score of the EMA teacher saved beside the student's best checkpoint (results.json's
    "teacher", written by --eval_with_teacher), None when the record has none."""
    dev = dev_metrics(rec.get("result", {}).get("teacher") or {}, task)
    return None if dev is None else metrics_glue_score(task, dev)


def teacher_table(records: list[dict]) -> str:
    """Single-task runs with --eval_with_teacher (EXTRA_RESULTS): per config and task, the student (the
    run's best checkpoint), its EMA teacher at that step (best/teacher/, what `predict.py --use_teacher`
    uses), and plain's protocol record of the same seed (from `records`), as paired differences."""
    runs = [r for r in load_records(EXTRA_RESULTS) if r["mode"] == "single" and r.get("result", {}).get("teacher")]
    plain = scores(records)
    lines = [
        "| config | task | student − plain | teacher − plain | teacher − student |",
        "|---|---|---|---|---|",
    ]
    for config in configs_of(runs):
        for task in TASKS:
            recs = [r for r in runs if r["config"] == config and task in r["tasks"]]
            student = {r["seed"]: s for r in recs if (s := glue_score(r, task)) is not None}
            teacher = {r["seed"]: s for r in recs if (s := teacher_score(r, task)) is not None}
            if not teacher:
                continue
            base = plain.get(("single", BASE, task), {})
            cells = [diff_text(base, student), diff_text(base, teacher), diff_text(student, teacher)]
            lines.append(f"| {config} | {task} | " + " | ".join(c or EMPTY for c in cells) + " |")
    if len(lines) == 2:
        lines.append(f"| no records yet | {EMPTY} | {EMPTY} | {EMPTY} | {EMPTY} |")
    return "\n".join(lines)


def run_epochs(rec: dict) -> int | None:
    """The epoch count an off-protocol record trained for (`--epochs=N` in its `extra`), None without one."""
    for flag in rec.get("extra", []):
        name, _, value = flag.partition("=")
        if name == "--epochs" and value.isdigit():
            return int(value)
    return None


def eval_metrics(row: dict, task: str) -> dict[str, float]:
    """The task's dev metrics in one history.jsonl row ("dev/<task>/dev/<metric>" -> metric name)."""
    prefix = f"dev/{task}/dev/"
    return {k.removeprefix(prefix): v for k, v in row.items() if k.startswith(prefix)}


def epoch_scores(rec: dict, task: str) -> list[float]:
    """The task's dev GLUE score after each epoch, from the record's history (its "eval" rows)."""
    evals = [eval_metrics(row, task) for row in rec.get("history", []) if row.get("kind") == "eval"]
    return [metrics_glue_score(task, m) for m in evals if all(name in m for name in GLUE_SCORE[task])]


def long_runs_table(records: list[dict]) -> str:
    """Single-task runs longer than the protocol's 3 epochs (EXTRA_RESULTS, `--extra=--epochs=N`): per
    task, seed and config, the dev GLUE score after each epoch, the best epoch, and the best score
    against plain's run of the same task, seed and length: does a method help once plain has peaked?"""
    runs = [r for r in load_records(EXTRA_RESULTS) if r["mode"] == "single" and (run_epochs(r) or 3) > 3]
    plain = {(r["tasks"][0], r["seed"], run_epochs(r)): r for r in runs if r["config"] == BASE}
    lines = [
        "| task | seed | config | epochs | dev score after each epoch | best (epoch) | best − plain |",
        "|---|---|---|---|---|---|---|",
    ]
    order = sorted(
        runs, key=lambda r: (TASKS.index(r["tasks"][0]), r["seed"], r["config"] != BASE, r["config"], run_epochs(r))
    )
    for rec in order:
        task, n = rec["tasks"][0], run_epochs(rec)
        curve = epoch_scores(rec, task)
        if not curve:
            continue
        best = max(curve)  # a tie names the earlier epoch
        base = plain.get((task, rec["seed"], n))
        base_curve = epoch_scores(base, task) if base else []
        delta = f"{best - max(base_curve):+.1f}" if base_curve and rec["config"] != BASE else EMPTY
        cells = [task, str(rec["seed"]), rec["config"], str(n), ", ".join(f"{v:.1f}" for v in curve)]
        lines.append("| " + " | ".join(cells + [f"{best:.1f} ({curve.index(best) + 1})", delta]) + " |")
    if len(lines) == 2:
        lines.append("| no records yet |" + f" {EMPTY} |" * 6)
    return "\n".join(lines)


# file -> block name -> table made from the records
BLOCKS: dict[str, dict[str, Callable[[list[dict]], str]]] = {
    "README.md": {"headline": headline_table, "robust": robust_summary_table},
    "benchmarks/README.md": {
        "robust-paired": robust_table,
        "full-scores": full_scores_table,
        "full-paired": full_paired_table,
        "full-robust": full_robust_table,
        "last-epoch": last_epoch_table,
        "plain-peaked": plain_peaked_table,
        "teacher": teacher_table,
        "long-runs": long_runs_table,
    },
}


def render(text: str, blocks: dict[str, Callable[[list[dict]], str]], records: list[dict], name: str) -> str:
    """`text` with each named block replaced by its table."""
    for block, make in blocks.items():
        begin, end = f"<!-- table:{block} -->\n", f"<!-- /table:{block} -->"
        head, found, rest = text.partition(begin)
        _, found_end, tail = rest.partition(end)
        if not (found and found_end):
            raise SystemExit(f"{name} has no {begin.strip()} ... {end} block")
        text = head + begin + make(records) + "\n" + end + tail
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="only report whether both files are current")
    p.add_argument("--results", default=str(RESULTS), help="folder of glue_full records")
    args = p.parse_args()
    records = load_records(Path(args.results))
    stale = []
    for name, blocks in BLOCKS.items():
        path = REPO / name
        old = path.read_text(encoding="utf-8")
        new = render(old, blocks, records, name)
        if new != old:
            stale.append(name)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    if args.check:
        if stale:
            print(f"stale tables in {', '.join(stale)}: run `python benchmarks/readme_tables.py`", file=sys.stderr)
        sys.exit(1 if stale else 0)
    print(f"tables updated in {', '.join(stale)}" if stale else "tables unchanged")


if __name__ == "__main__":
    main()
