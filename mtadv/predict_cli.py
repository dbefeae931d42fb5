"""Command line of predict.py: flags from PredictConfig, errors as `error: ...` and exit 2."""

from __future__ import annotations

import argparse

from mtadv.cli import _quiet_libraries, guarded
from mtadv.config import AttackConfig, FlagParser, add_section_flags


def build_predict_parser() -> argparse.ArgumentParser:
    from mtadv.predict import PredictConfig  # light-import: torch and transformers, when the parser is built

    parser = FlagParser(
        description="GLUE leaderboard files (--split test) or dev metrics (--split dev) from an mtadv checkpoint."
    )
    add_section_flags(parser, PredictConfig)
    add_section_flags(parser, AttackConfig)
    return parser


def run_predict_cli(argv: list[str] | None = None) -> int:
    from mtadv.api import load_plugins  # light-import: the methods' registry, when the command runs

    load_plugins()  # heads and task types of other packages (entry points "mtadv.plugins")
    args = build_predict_parser().parse_args(argv)
    _quiet_libraries()

    def go() -> None:
        # light-import: ditto
        from mtadv.predict import attack_config_from_namespace, config_from_namespace, run_predict

        run_predict(config_from_namespace(vars(args)), attack_config_from_namespace(vars(args)))

    return guarded(go)
