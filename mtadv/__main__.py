"""`python -m mtadv`: the commands mtadv installs (`python -m mtadv train ...` runs one)."""

from __future__ import annotations

import sys

from mtadv import __version__

COMMANDS = {
    "train": ("mtadv-train", "multi-task fine-tuning with adversarial regularization (python train.py)"),
    "predict": ("mtadv-predict", "GLUE leaderboard files or dev metrics from a checkpoint (python predict.py)"),
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in COMMANDS:
        if args[0] == "train":
            from mtadv.cli import run_train  # light-import: `python -m mtadv` lists the commands fast

            return run_train(args[1:])
        from mtadv.cli import run_predict_cli  # light-import: ditto

        return run_predict_cli(args[1:])
    print(f"mtadv {__version__}: the commands (each takes --help)")
    for command, help_text in COMMANDS.values():
        print(f"  {command:14} {help_text}")
    print("Also: python -m mtadv train|predict ...; the Python API: help(mtadv), docs/hf_trainer.md")
    return 0 if not args else 2


if __name__ == "__main__":
    sys.exit(main())
