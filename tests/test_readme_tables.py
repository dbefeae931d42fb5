"""The README's accuracy tables are generated from the committed result files, never edited by hand."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_readme_tables_match_the_committed_results():
    proc = subprocess.run([sys.executable, "benchmarks/readme_tables.py", "--check"], cwd=REPO)
    assert proc.returncode == 0, "README.md tables are stale: run `python benchmarks/readme_tables.py`"


def _record(out: Path, config: str, seed: int, score: float) -> None:
    rec = {"id": f"single-stsb-{config}-s{seed}_b", "mode": "single", "tasks": ["stsb"], "config": config}
    rec |= {"seed": seed, "tag": "_b", "result": {"results": {"stsb": {"dev": {"pearson": score}}}}}
    (out / f"{rec['id']}.json").write_text(json.dumps(rec))


def test_paired_table_differences_seeds_both_configs_share(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
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
