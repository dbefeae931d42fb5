"""Validate a GLUE submission.zip the way the leaderboard does, independently of mtadv's code.

    python benchmarks/validate_submission.py --zip submission/submission.zip --glue_dir /work/shared/glue

For every leaderboard file whose test file exists under --glue_dir (AX included), checks:
the file is in the zip at its root under the leaderboard's name; its header is
`index\\tprediction`; it has one row per test example; its index set equals the test file's (each
exactly once, in the same order); every prediction is in the leaderboard's vocabulary (STS-B: a
number in [0, 5]). The spec below is written out by hand from the GLUE submission format, not
read from task_defs/glue.yml, so a mistake in the task definitions is caught too.

Prints one line per file and writes a JSON report with --report; exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import zipfile
from collections import Counter

BINARY = ("0", "1")
NLI3 = ("entailment", "neutral", "contradiction")
NLI2 = ("entailment", "not_entailment")
# leaderboard file -> (test file under glue_dir, its index column, vocabulary or None for a score in [0, 5])
LEADERBOARD = {
    "CoLA.tsv": ("CoLA/test.tsv", "index", BINARY),
    "SST-2.tsv": ("SST-2/test.tsv", "index", BINARY),
    "MRPC.tsv": ("MRPC/test.tsv", "index", BINARY),
    "STS-B.tsv": ("STS-B/test.tsv", "index", None),
    "QQP.tsv": ("QQP/test.tsv", "id", BINARY),
    "MNLI-m.tsv": ("MNLI/test_matched.tsv", "index", NLI3),
    "MNLI-mm.tsv": ("MNLI/test_mismatched.tsv", "index", NLI3),
    "QNLI.tsv": ("QNLI/test.tsv", "index", NLI2),
    "RTE.tsv": ("RTE/test.tsv", "index", NLI2),
    "WNLI.tsv": ("WNLI/test.tsv", "index", BINARY),
    "AX.tsv": ("diagnostic/AX.tsv", "index", NLI3),
}


def read_tsv(data: str) -> list[list[str]]:
    return list(csv.reader(data.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE))


def test_file_ids(path: str, id_column: str) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = [r for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if r]
    return [r[rows[0].index(id_column)] for r in rows[1:]]


def check_file(name: str, text: str, ids: list[str], vocabulary: tuple[str, ...] | None) -> dict:
    """All the leaderboard's checks on one file; returns counts and a list of problems."""
    problems: list[str] = []
    rows = read_tsv(text)
    if not rows or rows[0] != ["index", "prediction"]:
        problems.append(f"header is {rows[0] if rows else None}, expected ['index', 'prediction']")
    body = rows[1:]
    if len(body) != len(ids):
        problems.append(f"{len(body)} rows, test file has {len(ids)}")
    bad_shape = [r for r in body if len(r) != 2]
    if bad_shape:
        problems.append(f"{len(bad_shape)} rows without exactly 2 fields, e.g. {bad_shape[0]}")
    got = [r[0] for r in body]
    counts = Counter(got)
    if any(n > 1 for n in counts.values()):
        problems.append(f"repeated indices: {[i for i, n in counts.items() if n > 1][:5]}")
    if set(got) != set(ids):
        problems.append(f"index set differs: {len(set(ids) - set(got))} missing, {len(set(got) - set(ids))} extra")
    elif got != ids:
        problems.append("rows are not in the test file's order")
    labels = [r[1] for r in body if len(r) == 2]
    problems += vocabulary_problems(labels, vocabulary)
    dist = dict(sorted(Counter(labels).items())) if vocabulary else _score_summary(labels)
    return {"file": name, "rows": len(body), "test_rows": len(ids), "predictions": dist, "problems": problems}


def vocabulary_problems(labels: list[str], vocabulary: tuple[str, ...] | None) -> list[str]:
    if vocabulary is not None:
        bad = sorted({x for x in labels if x not in vocabulary})
        return [f"labels outside {list(vocabulary)}: {bad[:5]}"] if bad else []
    bad = []
    for x in labels:
        try:
            v = float(x)
        except ValueError:
            bad.append(x)
            continue
        if not (math.isfinite(v) and 0.0 <= v <= 5.0):
            bad.append(x)
    return [f"scores that are not numbers in [0, 5]: {bad[:5]}"] if bad else []


def _score_summary(labels: list[str]) -> dict:
    values = [float(x) for x in labels]
    if not values:
        return {}
    return {
        "min": min(values),
        "max": max(values),
        "mean": round(sum(values) / len(values), 3),
        "distinct": len(set(values)),
    }


def validate(zip_path: str, glue_dir: str) -> tuple[list[dict], list[str]]:
    """Check every expected file; also flag zip entries that are not leaderboard files at the root."""
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        contents = {n: zf.read(n).decode("utf-8") for n in names}
    global_problems = [
        f"unexpected entry {n!r} (not a leaderboard file at the zip's root)" for n in names if n not in LEADERBOARD
    ]
    reports = []
    for name, (test_path, id_column, vocabulary) in LEADERBOARD.items():
        path = os.path.join(glue_dir, test_path)
        if not os.path.isfile(path):
            continue  # this task's test file is not available here: nothing to compare against
        ids = test_file_ids(path, id_column)
        if name not in contents:
            reports.append({"file": name, "rows": 0, "test_rows": len(ids), "problems": ["missing from the zip"]})
            continue
        reports.append(check_file(name, contents[name], ids, vocabulary))
    extra = [n for n in names if n in LEADERBOARD and n not in {r["file"] for r in reports}]
    return reports, global_problems + [f"{n}: in the zip but its test file is not under --glue_dir" for n in extra]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zip", required=True, help="the submission.zip to check")
    parser.add_argument("--glue_dir", required=True, help="folder with the real GLUE test files (glue_data layout)")
    parser.add_argument("--report", default="", help="also write the per-file results as JSON here")
    args = parser.parse_args(argv)
    reports, problems = validate(args.zip, args.glue_dir)
    for r in reports:
        status = "OK  " if not r["problems"] else "FAIL"
        print(f"{status} {r['file']:<12} rows {r['rows']:>5} / test {r['test_rows']:>5}  {r.get('predictions', '')}")
        for p in r["problems"]:
            print(f"       - {p}")
    for p in problems:
        print(f"FAIL {p}")
    ok = not problems and all(not r["problems"] for r in reports)
    print(f"{'PASS' if ok else 'FAIL'}: {len(reports)} leaderboard files checked against {args.glue_dir}")
    if args.report:
        with open(args.report, "w") as f:
            json.dump(
                {"zip": args.zip, "glue_dir": args.glue_dir, "files": reports, "problems": problems, "pass": ok},
                f,
                indent=2,
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
