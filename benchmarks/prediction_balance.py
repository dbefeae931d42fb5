"""How confident and how varied are a checkpoint's clean dev predictions?

Read next to robust accuracy: a model whose outputs barely move (probabilities near 1/C, or one
class for nearly every input) is hard for an attack to move too, without being a better model.
For each kept full-data checkpoint (`glue_full.py --keep_best DIR`), this scores the dev split
with `predict.py --split dev` and reads its JSONL:

- `acc`: accuracy (the record's own clean score);
- `top class share`: the share of dev examples predicted as the most predicted class, next to that
  class's share of the gold labels;
- `mean max prob`: the mean over dev examples of the predicted class's probability (1/C for a
  model that has not left its initialisation, 1 for a fully confident one).

Classification tasks only.

    python benchmarks/prediction_balance.py --best_dir DIR --data_dir path/to/glue \\
        --ids single-rte-plain-s1_full,single-rte-smart_emb_eps0.1-s1_full
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def dev_predictions(checkpoint: Path, data_dir: str, out_dir: Path) -> list[dict]:
    """The checkpoint's clean dev predictions (JSONL rows: gold, predicted, probabilities), scored
    once into `out_dir` and read from there afterwards."""
    if not list(out_dir.glob("*.dev.jsonl")):
        cmd = [sys.executable, str(REPO / "predict.py"), "--checkpoint", str(checkpoint), "--split", "dev"]
        cmd += ["--data_dir", data_dir, "--output_dir", str(out_dir), "--progress", "false"]
        subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, env={**os.environ, "TQDM_DISABLE": "1"})
    (jsonl,) = out_dir.glob("*.dev.jsonl")
    return [json.loads(line) for line in jsonl.read_text().splitlines()]


def balance(rows: list[dict]) -> dict[str, float | str]:
    predicted = collections.Counter(r["predicted"] for r in rows)
    top, count = predicted.most_common(1)[0]
    return {
        "acc": 100 * statistics.fmean(r["predicted"] == r["gold"] for r in rows),
        "top": top,
        "top_share": 100 * count / len(rows),
        "gold_share": 100 * sum(r["gold"] == top for r in rows) / len(rows),
        "mean_max_prob": statistics.fmean(max(r["probabilities"].values()) for r in rows),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--best_dir", required=True, help="glue_full.py's --keep_best folder: one checkpoint per record id")
    p.add_argument("--ids", required=True, help="comma-separated record ids")
    p.add_argument("--data_dir", default=str(REPO.parent / "shared" / "glue"))
    p.add_argument("--work_dir", default="runs/prediction_balance", help="where the predictions are kept")
    args = p.parse_args()
    print("| record | acc | top class share (its gold share) | mean max prob |")
    print("|---|---|---|---|")
    for rid in args.ids.split(","):
        rows = dev_predictions(Path(args.best_dir) / rid, args.data_dir, Path(args.work_dir) / rid)
        b = balance(rows)
        share = f"{b['top_share']:.1f}% `{b['top']}` ({b['gold_share']:.1f}%)"
        print(f"| {rid} | {b['acc']:.1f} | {share} | {b['mean_max_prob']:.3f} |")


if __name__ == "__main__":
    main()
