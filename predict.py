"""Leaderboard files (test splits) or metrics (dev splits) from an mtadv checkpoint alone.

    python predict.py --checkpoint runs/glue/best --data_dir glue_data --output_dir submission/
    python predict.py --checkpoint runs/glue/best --split dev --output_dir runs/glue/dev_predictions

Run `python predict.py --help` for every flag; docs/predict.md documents them and the file formats.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from mtadv.cli import run_predict_cli

    return run_predict_cli(argv)


if __name__ == "__main__":
    sys.exit(main())
