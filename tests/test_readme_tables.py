"""The README's accuracy tables are generated from the committed result files, never edited by hand."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_readme_tables_match_the_committed_results():
    proc = subprocess.run([sys.executable, "benchmarks/readme_tables.py", "--check"], cwd=REPO)
    assert proc.returncode == 0, "README.md tables are stale: run `python benchmarks/readme_tables.py`"
