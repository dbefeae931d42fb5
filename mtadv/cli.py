"""The commands train.py and predict.py (and mtadv-train, mtadv-predict): parse flags, build, run.

Both share one pattern: flags from config dataclasses, plugins loaded first, and a user error printed
as one `error: ...` line with exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

from mtadv.errors import UserError
from mtadv.signals import Interrupted, StoppedAtOnce


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.logging.set_verbosity_error()
    logging.getLogger("torch.utils.tensorboard").setLevel(logging.ERROR)


def guarded(fn: Callable[[], object]) -> int:
    """Run fn; a UserError becomes `error: <message>` on stderr and exit code 2."""
    try:
        fn()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (Interrupted, StoppedAtOnce) as e:  # SIGTERM/SIGINT: 128 + signal number
        print(f"stopped: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # before a command knew where it writes
        print(f"stopped: {StoppedAtOnce('nothing was written')}", file=sys.stderr)
        return StoppedAtOnce("").exit_code
    return 0


def run_train(argv: list[str] | None = None) -> int:
    from mtadv.api import load_plugins  # light-import: what a command runs loads when it runs
    from mtadv.config import build_parser, config_from_args  # light-import: ditto

    load_plugins()  # methods, heads and task types of other packages (entry points "mtadv.plugins")
    parser = build_parser("Multi-task fine-tuning with adversarial regularization (mtadv).")
    args = parser.parse_args(argv)
    _quiet_libraries()

    def go() -> None:
        from mtadv.build import build_trainer  # light-import: torch, transformers, datasets: after the flags parsed
        from mtadv.run_dir import describe_on_disk  # light-import: ditto

        cfg = config_from_args(args)
        try:
            build_trainer(cfg).train()
        except KeyboardInterrupt:  # a Ctrl-C during start-up, or a second one during training
            raise StoppedAtOnce(describe_on_disk(cfg.train.output_dir)) from None
        finally:
            close_distributed()

    return guarded(go)


def close_distributed() -> None:
    """Under torchrun, close the process group before the interpreter exits.

    Left open, gloo's worker threads can outlive interpreter shutdown, and the process then dies with
    'terminate called without an active exception' (SIGABRT) after its work is done.
    """
    import torch.distributed as dist  # light-import: torch, only when a command ran

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def build_predict_parser() -> argparse.ArgumentParser:
    from mtadv.config import AttackConfig, FlagParser, add_section_flags  # light-import: ditto
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
