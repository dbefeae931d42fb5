"""Write the unlabeled sentences of GLUE training files as an MLM corpus (one sentence per line).

    python benchmarks/glue_corpus.py --data_dir /work/shared/glue --out runs/alum_corpus/glue_train.txt

Reads every task of task_defs/glue.yml whose train file exists under --data_dir (through the
project's own readers, so GLUE's file quirks are handled once), takes text_a and text_b, drops
exact duplicates (keeping first occurrences) and labels. Dev and test files are never read, so
fine-tuning dev scores stay honest after pretraining on this corpus.
"""

from __future__ import annotations

import argparse
import os

from mtadv.data_utils.readers import read_split, split_path
from mtadv.taskdef import load_task_defs


def glue_sentences(task_def: str, data_dir: str) -> tuple[list[str], dict[str, int]]:
    seen: dict[str, None] = {}
    per_task: dict[str, int] = {}
    for name, task in load_task_defs(task_def).items():
        train = task.splits.get("train")
        if train is None or not os.path.isfile(split_path(train, data_dir)):
            continue
        rows = read_split(task, "train", data_dir)
        before = len(seen)
        for col in ("text_a", "text_b"):
            if col in rows.column_names:
                seen.update((s.strip(), None) for s in rows[col] if s.strip())
        per_task[name] = len(seen) - before
    return list(seen), per_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data_dir", required=True)
    ap.add_argument("--task_def", default="task_defs/glue.yml")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    sentences, per_task = glue_sentences(args.task_def, args.data_dir)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.writelines(s.replace("\n", " ") + "\n" for s in sentences)
    print(f"wrote {len(sentences)} unique sentences to {args.out}: new per task {per_task}")


if __name__ == "__main__":
    main()
