"""Multi-task fine-tuning (and continued MLM pretraining) of a transformer encoder.

    python train.py --task_def task_defs/glue.yml --tasks rte,mrpc --data_dir glue_data \
        --init_checkpoint bert-base-uncased --output_dir runs/glue [--smart]

Run `python train.py --help` for every flag; docs/cli.md documents them.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from mtadv.cli import run_train

    return run_train(argv)


if __name__ == "__main__":
    sys.exit(main())
