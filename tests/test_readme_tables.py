"""The results tables are generated from the committed result files, never edited by hand."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import readme_tables as rt  # noqa: E402


def test_readme_tables_match_the_committed_results():
    proc = subprocess.run([sys.executable, "benchmarks/readme_tables.py", "--check"], cwd=REPO)
    assert proc.returncode == 0, (
        "README.md or benchmarks/README.md tables are stale: run `python benchmarks/readme_tables.py`"
    )


def _record(out: Path, config: str, seed: int, score: float) -> None:
    rec = {"id": f"single-stsb-{config}-s{seed}_b", "mode": "single", "tasks": ["stsb"], "config": config}
    rec |= {"seed": seed, "tag": "_b", "result": {"results": {"stsb": {"dev": {"pearson": score}}}}}
    (out / f"{rec['id']}.json").write_text(json.dumps(rec))


def test_paired_table_differences_seeds_both_configs_share(tmp_path):
    from glue_small import paired_table

    for seed, (base, other) in enumerate([(50.0, 48.0), (60.0, 59.0), (40.0, 37.0)], start=1):
        _record(tmp_path, "plain", seed, base)
        _record(tmp_path, "smart", seed, other)
    _record(tmp_path, "plain", 4, 45.0)  # no partner: left out
    rows = paired_table(tmp_path, "_b", [("plain", "smart"), ("plain", "missing")]).splitlines()[2:]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[1:5] == ["single", "stsb", "smart − plain", "-2.0, -1.0, -3.0"]
    assert cells[5] == "-2.0 ± 1.0"
    assert cells[6] == "0.07"  # paired t on (-2, -1, -3): t = -3.46 with 2 df, two-sided p = 0.074


# ------------------------------------------------------------------ full-data records (glue_full.py)
METRICS = {"rte": ["accuracy"], "mrpc": ["accuracy", "f1"], "cola": ["mcc"], "stsb": ["pearson", "spearman"]}


def full(config: str, seed: int, task: str, score: float, mode: str = "single", wall: float = 600.0) -> dict:
    """A glue_full record whose task's GLUE score is `score` (MRPC/STS-B: metrics score ± 1)."""
    values = [score] if len(METRICS[task]) == 1 else [score - 1.0, score + 1.0]
    dev = dict(zip(METRICS[task], values))
    return {
        "id": f"{mode}-{task}-{config}-s{seed}_full",
        "mode": mode,
        "tasks": [task],
        "config": config,
        "seed": seed,
        "tag": "_full",
        "flags": [],
        "wall_s": wall,
        "result": {"results": {task: {"dev": dev}}},
        "train_stats": {},
    }


def rows(table: str) -> dict[str, list[str]]:
    """First cell -> the other cells, for the table's body rows."""
    out = {}
    for line in table.splitlines()[2:]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out[cells[0]] = cells[1:]
    return out


def test_headline_without_records_shows_plain_with_dashes():
    assert rows(rt.headline_table([]))["plain"] == ["—"] * 6


def test_the_readme_shows_what_a_user_types_and_leaves_calibration_cells_to_the_benchmarks():
    recs = [full(c, 1, "rte", 60.0) for c in ("plain", "smart", "vat", "pgd_emb_eps0.003", "pgd_emb_eps0.03")]
    assert list(rows(rt.headline_table(recs))) == ["plain", "pgd_emb_eps0.003 (= `--adv pgd`)", "smart", "vat"]
    assert "pgd_emb_eps0.03" in rt.full_scores_table(recs)


def test_headline_one_record_per_cell():
    table = rt.headline_table([full("plain", 1, "rte", 60.0), full("smart", 1, "rte", 62.0)])
    body = rows(table)
    assert list(body) == ["plain", "smart"]
    assert body["plain"][:2] == ["60.0 (n=1)", "—"]
    assert body["smart"][0] == "62.0 (n=1); Δ +2.0 (n=1)"
    assert body["smart"][4] == "—"  # the mean of 4 needs all four tasks
    assert body["plain"][5] == "10.0 min"


def test_headline_paired_difference_mean_of_four_and_glue_scores():
    recs = []
    base = {
        "rte": [60.0, 62.0, 64.0],
        "mrpc": [80.0, 82.0, 84.0],
        "cola": [30.0, 32.0, 34.0],
        "stsb": [85.0, 86.0, 87.0],
    }
    for task, values in base.items():
        for seed, v in enumerate(values, start=1):
            recs.append(full("plain", seed, task, v))
            recs.append(full("smart", seed, task, v + [2.0, 1.0, 3.0][seed - 1], wall=1200.0))
    recs.append(full("plain", 4, "rte", 50.0))  # no partner: in plain's mean, not in any difference
    body = rows(rt.headline_table(recs))
    assert list(body) == ["plain", "smart"]
    assert body["plain"][0] == "59.0 ± 6.2 (n=4)"
    assert body["plain"][1] == "82.0 ± 2.0 (n=3)"  # MRPC: the mean of accuracy and F1
    # (+2, +1, +3): mean +2, std 1, paired t = 3.46 with 2 df, p = 0.074
    assert body["smart"][0] == "64.0 ± 2.6 (n=3); Δ +2.0 ± 1.0, p = 0.07 (n=3)"
    assert body["plain"][4] == "65.5 ± 1.8 (n=3)"  # seed 4 has RTE only
    assert body["smart"][4].endswith("Δ +2.0 ± 1.0, p = 0.07 (n=3)")
    assert body["smart"][5] == "20.0 min"


def test_equal_differences_have_no_p_value():
    recs = [full(c, s, "cola", 30.0 + s + (1.0 if c == "vat" else 0.0)) for c in ("plain", "vat") for s in (1, 2)]
    assert rows(rt.headline_table(recs))["vat"][2].endswith("Δ +1.0 ± 0.0, p = — (n=2)")


def test_full_tables_cover_modes_metrics_and_pairs():
    recs = [full(c, s, "mrpc", 80.0 + s + (c == "smart")) for c in ("plain", "smart") for s in (1, 2, 3)]
    multi = full("plain", 1, "mrpc", 79.0, mode="multi")
    scores = rt.full_scores_table([*recs, multi]).splitlines()[2:]
    assert [line.split(" | ")[:2] for line in scores] == [
        ["| single", "plain"],
        ["| single", "smart"],
        ["| multi", "plain"],
    ]
    assert scores[0].split(" | ")[3] == "accuracy 81.0 ± 1.0 (n=3), f1 83.0 ± 1.0 (n=3)"
    paired = rt.full_paired_table([*recs, multi]).splitlines()[2:]
    assert paired == ["| single | mrpc | smart − plain | s1 +1.0, s2 +1.0, s3 +1.0 | +1.0 ± 0.0 | — |"]
    assert "no records yet" in rt.full_scores_table([])
    assert "no config" in rt.full_paired_table([])


def test_records_missing_a_metric_are_left_out():
    rec = full("plain", 1, "mrpc", 80.0)
    del rec["result"]["results"]["mrpc"]["dev"]["f1"]
    assert rows(rt.headline_table([rec]))["plain"][1] == "—"


def test_render_replaces_blocks_and_names_a_missing_one():
    text = "a\n<!-- table:headline -->\nold\n<!-- /table:headline -->\nb\n"
    new = rt.render(text, {"headline": lambda recs: "NEW"}, [], "X.md")
    assert new == "a\n<!-- table:headline -->\nNEW\n<!-- /table:headline -->\nb\n"
    with pytest.raises(SystemExit, match="X.md has no <!-- table:other -->"):
        rt.render(text, {"other": lambda recs: ""}, [], "X.md")


def with_robust(rec: dict, pgd: float, typo: float) -> dict:
    """`rec` with robust scores: under pgd and typo the task's GLUE score is `pgd` and `typo`."""
    task = rec["tasks"][0]
    rec["robust"] = {}
    for attack, score in (("pgd", pgd), ("typo", typo)):
        values = [score] if len(METRICS[task]) == 1 else [score - 1.0, score + 1.0]
        dev = {**dict(zip(METRICS[task], values)), "attack_success_rate": 100.0 - score}
        settings = {"name": attack, "attack_eps": 0.1, "attack_steps": 5, "attack_norm": "linf"}
        settings |= {"attack_space": "embedding", "attack_rate": 0.1, "attack_seed": 0}
        rec["robust"][attack] = {"settings": settings, "results": {task: {"dev": dev}}}
    return rec


def robust_rows(table: str) -> dict[tuple[str, str], list[str]]:
    """(config, scored) -> the task and mean cells of the robust table's body rows."""
    out = {}
    for line in table.splitlines()[2:]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out[(cells[0], cells[1])] = cells[2:]
    return out


def test_robust_table_pairs_attacked_scores_against_plain():
    recs = []
    for seed in (1, 2):
        recs.append(with_robust(full("plain", seed, "rte", 60.0 + seed), pgd=40.0 + seed, typo=55.0))
        recs.append(with_robust(full("pgd", seed, "rte", 60.0 + seed), pgd=45.0 + 2 * seed, typo=55.0 + seed))
    recs.append(full("vat", 1, "rte", 70.0))  # no robust scores: a clean row, empty attacked rows
    body = robust_rows(rt.robust_table(recs))
    assert list(body)[:3] == [("plain", "clean"), ("plain", "pgd"), ("plain", "typo")]
    assert body[("plain", "pgd")][0] == "41.5 ± 0.7 (n=2)"
    # pgd − plain under pgd: seed 1 +6, seed 2 +7
    assert body[("pgd", "pgd")][0] == "48.0 ± 1.4 (n=2); Δ +6.5 ± 0.7, p = 0.05 (n=2)"
    assert body[("pgd", "clean")][0].endswith("Δ +0.0 ± 0.0, p = — (n=2)")
    assert body[("vat", "pgd")][0] == "—"
    assert rt.robust_table(recs).endswith(
        "Attack settings: pgd: space embedding, norm linf, eps 0.1, steps 5; typo: rate 0.1, seed 0."
    )
    assert rt.robust_table([full("plain", 1, "rte", 60.0)]) == "No record holds robust scores yet."
    # another attack's setting, recorded with typo's, does not make typo's settings differ
    recs[0]["robust"]["typo"]["settings"]["attack_eps"] = 0.5
    assert rt.robust_table(recs).endswith("typo: rate 0.1, seed 0.")
    recs[0]["robust"]["typo"]["settings"]["attack_rate"] = 0.2
    assert "typo: mixed settings" in rt.robust_table(recs)


def test_robust_summary_shows_plain_scores_and_other_configs_paired_differences():
    recs = []
    for seed in (1, 2):
        recs.append(with_robust(full("plain", seed, "rte", 60.0 + seed), pgd=40.0 + seed, typo=55.0))
        recs.append(with_robust(full("pgd", seed, "rte", 59.0 + seed), pgd=45.0 + 2 * seed, typo=56.0))
    recs.append(with_robust(full("pgd", 3, "rte", 70.0), pgd=50.0, typo=50.0))  # no plain seed 3: unpaired
    recs.append(full("vat", 1, "rte", 70.0))  # no robust scores
    table = rt.robust_summary_table(recs)
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in table.splitlines()[2:] if "|" in line}
    assert table.splitlines()[0].startswith("| config | RTE: clean / pgd / typo | MRPC: clean / pgd / typo")
    assert rows["plain"][0] == "61.5 / 41.5 / 55.0 (n=2)"
    # pgd − plain, seeds 1–2: clean −1, pgd +6 and +7, typo +1
    assert rows["pgd"][0] == "Δ -1.0 / +6.5 / +1.0 (n=2)"
    assert rows["pgd"][1] == "—" and rows["vat"][0] == "—"
    assert table.endswith("typo: rate 0.1, seed 0.")
    assert rt.robust_summary_table([full("plain", 1, "rte", 60.0)]) == "No record holds robust scores yet."


def test_full_robust_table_lists_attacked_metrics_and_success_rate():
    recs = [with_robust(full("plain", s, "mrpc", 80.0), pgd=50.0 + s, typo=70.0) for s in (1, 2)]
    lines = rt.full_robust_table(recs).splitlines()[2:]
    assert lines[0] == (
        "| single | plain | mrpc | pgd | accuracy 50.5 ± 0.7 (n=2), f1 52.5 ± 0.7 (n=2) | 48.5 ± 0.7 (n=2) |"
    )
    assert lines[1].split(" | ")[3] == "typo"
    assert "no robust scores yet" in rt.full_robust_table([])


def test_paired_pvalue_is_undefined_when_every_seed_moves_by_the_same_example():
    from glue_small import paired_pvalue

    # RTE's dev split has 277 examples: two seeds each one example lower differ by 100/277 up to round-off
    base, other = [62.454873646209386, 60.28880866425993], [62.093862815884485, 59.92779783393502]
    assert paired_pvalue(base, other) is None
    assert paired_pvalue([50.0], [48.0]) is None
    assert paired_pvalue([50.0, 60.0, 40.0], [48.0, 59.0, 37.0]) == pytest.approx(0.074, abs=1e-3)


def test_a_config_that_only_pins_its_methods_defaults_is_labelled_with_what_a_user_types():
    """pgd_emb_eps0.003 pins PGD's own defaults: its row says `--adv pgd`, so a reader finds the default."""
    assert rt.typed_equivalent("pgd_emb_eps0.003") == "--adv pgd"
    assert rt.typed_equivalent("rdrop_a1") == "--adv rdrop"
    assert rt.row_label("fgm_emb_eps0.003") == "fgm_emb_eps0.003 (= `--adv fgm`)"
    for other in ["pgd_emb_eps0.01", "awp_lr5e-3", "smart_emb_eps0.1", "plain", "smart", "sift"]:
        assert rt.typed_equivalent(other) is None, other  # a changed setting, or already what a user types


def test_last_epoch_table_counts_runs_whose_best_checkpoint_is_their_last_step():
    def ran(config: str, seed: int, best_step: int) -> dict:
        rec = full(config, seed, "rte", 60.0)
        rec["result"] |= {"best": {"step": best_step}, "run": {"steps": 468}}
        return rec

    records = [ran("plain", 1, 468), ran("plain", 2, 312), ran("smart", 1, 468), full("smart", 2, "rte", 60.0)]
    body = rows(rt.last_epoch_table(records))
    assert body["plain"] == ["1 of 2", "—", "—", "—"]
    assert body["smart"] == ["1 of 1", "—", "—", "—"]  # a record without its steps is left out
    assert rows(rt.last_epoch_table([]))["no records yet"] == ["—"] * 4


def test_plain_peaked_table_splits_each_configs_differences_by_whether_plains_seed_had_peaked():
    def ran(config: str, seed: int, score: float, best_step: int) -> dict:
        rec = full(config, seed, "rte", score)
        rec["result"] |= {"best": {"step": best_step}, "run": {"steps": 468}}
        return rec

    records = [ran("plain", 1, 60.0, 468), ran("plain", 2, 62.0, 312), ran("plain", 3, 61.0, 468)]
    # smart's own best step does not matter, only plain's on the same seed; seed 4 has no plain partner
    records += [ran("smart", 1, 59.0, 312), ran("smart", 2, 63.0, 468), ran("smart", 3, 58.0, 468)]
    records += [ran("smart", 4, 70.0, 468)]
    body = rows(rt.plain_peaked_table(records))
    assert body["smart"] == ["+1.0 (n=1)", "-2.0 ± 1.4 (n=2)"]
    assert "plain" not in body
    assert rows(rt.plain_peaked_table([]))["no records yet"] == ["—", "—"]


def test_teacher_table_pairs_the_ema_teacher_against_its_student_and_plain(tmp_path, monkeypatch):
    def with_teacher(seed: int, student: float, teacher: float) -> dict:
        rec = full("bregman_mu0.3", seed, "cola", student)
        rec["result"]["teacher"] = {"results": {"cola": {"dev": {"mcc": teacher}}}}
        return rec

    extra = [with_teacher(1, 30.0, 31.0), with_teacher(2, 26.0, 26.5), full("bregman_mu0.3", 3, "cola", 27.0)]
    for rec in extra:  # seed 3 ran without --eval_with_teacher: it pairs nothing
        (tmp_path / f"{rec['id']}.json").write_text(json.dumps(rec))
    monkeypatch.setattr(rt, "EXTRA_RESULTS", tmp_path)
    plain = [full("plain", 1, "cola", 29.0), full("plain", 2, "cola", 27.0), full("plain", 3, "cola", 28.0)]
    lines = rt.teacher_table(plain).splitlines()
    assert len(lines) == 3
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[:2] == ["bregman_mu0.3", "cola"]
    assert cells[2].startswith("Δ +0.0 ± 1.4") and cells[2].endswith("(n=2)")  # student: +1.0, -1.0
    assert cells[3].startswith("Δ +0.8 ± 1.8") and cells[3].endswith("(n=2)")  # teacher: +2.0, -0.5
    assert cells[4].startswith("Δ +0.8 ± 0.4") and cells[4].endswith("(n=2)")  # teacher − student: +1.0, +0.5


def test_teacher_table_without_teacher_records_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(rt, "EXTRA_RESULTS", tmp_path)
    assert "no records yet" in rt.teacher_table([])


def test_long_runs_table_reads_each_epochs_dev_score_and_pairs_the_best_with_plains_run(tmp_path, monkeypatch):
    def long_run(config: str, seed: int, curve: list[float], epochs: int = 10) -> dict:
        rec = full(config, seed, "mrpc", max(curve))
        rec |= {"id": f"single-mrpc-{config}-s{seed}_full_epochs{epochs}", "extra": [f"--epochs={epochs}"]}
        # MRPC's GLUE score is the mean of accuracy and F1: each eval row holds score - 1 and score + 1
        rec["history"] = [{"step": 1, "kind": "train", "train/mrpc/loss": 0.5}]
        rec["history"] += [
            {"step": 10 * i, "kind": "eval", "dev/mrpc/dev/accuracy": v - 1.0, "dev/mrpc/dev/f1": v + 1.0}
            for i, v in enumerate(curve, start=1)
        ]
        return rec

    extra = [long_run("plain", 1, [70.0, 80.0, 79.0]), long_run("smart", 1, [72.0, 81.5, 81.5])]
    extra += [long_run("smart", 2, [75.0, 76.0])]  # no plain run of seed 2: no difference
    extra += [long_run("plain", 1, [90.0], epochs=5)]  # another length: not smart's partner
    extra += [full("plain", 3, "mrpc", 60.0) | {"extra": ["--learning_rate=1e-4"]}]  # 3 epochs: left out
    for rec in extra:
        (tmp_path / f"{rec['id']}.json").write_text(json.dumps(rec))
    monkeypatch.setattr(rt, "EXTRA_RESULTS", tmp_path)
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in rt.long_runs_table([]).splitlines()[2:]]
    assert [c[:4] for c in cells] == [
        ["mrpc", "1", "plain", "5"],
        ["mrpc", "1", "plain", "10"],
        ["mrpc", "1", "smart", "10"],
        ["mrpc", "2", "smart", "10"],
    ]
    by_key = {(c[1], c[2], c[3]): c[4:] for c in cells}
    assert by_key[("1", "plain", "10")] == ["70.0, 80.0, 79.0", "80.0 (2)", "—"]
    assert by_key[("1", "smart", "10")] == ["72.0, 81.5, 81.5", "81.5 (2)", "+1.5"]  # a tie keeps the earlier epoch
    assert by_key[("2", "smart", "10")] == ["75.0, 76.0", "76.0 (2)", "—"]
    assert by_key[("1", "plain", "5")] == ["90.0", "90.0 (1)", "—"]


def test_long_runs_table_without_records_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(rt, "EXTRA_RESULTS", tmp_path)
    assert "no records yet" in rt.long_runs_table([])
