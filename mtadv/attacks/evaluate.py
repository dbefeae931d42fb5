"""Scoring a labeled split under an attack: the task's metrics on the attacked predictions, and for
classification the attack success rate (the share of correctly predicted examples that it flips)."""

from __future__ import annotations

import random
from dataclasses import replace

import datasets
from torch import nn

from mtadv.attacks.base import Attack
from mtadv.data_utils.tokenize import TokenizedSplit, tokenize_split
from mtadv.evaluate import Predictions, split_metrics
from mtadv.taskdef import TaskDef
from mtadv.tasks.labeled import predict as labeled_predict  # attacks score labeled tasks only

TEXT_COLUMNS = ("text_a", "text_b")


def evaluate_under_attack(
    model: nn.Module, task: TaskDef, split: TokenizedSplit, req, attack: Attack, max_seq_len: int, cache_dir: str
) -> dict[str, float]:
    """Metrics under `attack` (the clean metrics' keys) plus `attack_success_rate` for classification.

    req: an mtadv.tasks.EvalRequest (tokenizer, batch size, device, autocast, rank, world size)."""
    clean, attacked = attacked_predictions(model, task, split, req, attack, max_seq_len, cache_dir)
    return attack_metrics(task, clean, attacked)


def attacked_predictions(
    model: nn.Module, task: TaskDef, split: TokenizedSplit, req, attack: Attack, max_seq_len: int, cache_dir: str
) -> tuple[Predictions, Predictions]:
    """The split's clean predictions and its predictions under `attack`, rows in the same order."""
    clean = labeled_predict(model, task, split, req)
    if attack.kind == "text":
        noisy = perturbed_split(split, attack, req.tokenizer, max_seq_len, cache_dir)
        attacked = labeled_predict(model, task, noisy, req)
    else:
        attacked = labeled_predict(model, task, split, req, forward=lambda b: attack.perturbed_outputs(model, b, task))
    return clean, attacked


def attack_metrics(task: TaskDef, clean: Predictions, attacked: Predictions) -> dict[str, float]:
    metrics = split_metrics(task, attacked)
    if attacked.outputs.ndim == 2:
        metrics["attack_success_rate"] = success_rate(clean, attacked)
    return metrics


def success_rate(clean: Predictions, attacked: Predictions) -> float:
    """100 × (correct clean and wrong under attack) / (correct clean); 0 when nothing was correct."""
    right = clean.outputs.argmax(-1) == clean.labels
    flipped = right & (attacked.outputs.argmax(-1) != attacked.labels)
    return float(100.0 * flipped.sum() / max(1, right.sum()))


def perturbed_split(split: TokenizedSplit, attack: Attack, tokenizer, max_seq_len: int, cache_dir: str):
    """The split with its raw text rewritten by a text attack (seeded per row and column), re-tokenized."""
    seed, cols = attack.cfg.attack_seed, [c for c in TEXT_COLUMNS if c in split.raw.column_names]

    def rewrite(row: dict, idx: int) -> dict:
        return {c: attack.perturb_text(row[c], random.Random(f"{seed}/{idx}/{c}")) for c in cols}

    raw: datasets.Dataset = split.raw.map(rewrite, with_indices=True, load_from_cache_file=False, desc=attack.name)
    key = ("attack", attack.name, attack.cfg.attack_rate, seed, raw._fingerprint)
    tokenized = tokenize_split(raw, tokenizer, max_seq_len, cache_dir, key)
    return replace(tokenized, raw=raw)


__all__ = ["attack_metrics", "attacked_predictions", "evaluate_under_attack", "perturbed_split", "success_rate"]
