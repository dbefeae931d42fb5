"""Small helpers for torchrun DDP; each is a no-op (or the identity) in a single process.

- evaluation is sharded (`shard_split`: rank r predicts rows r, r+W, r+2W, ...) and the
  predictions gathered on every rank (`gather_predictions`), so every rank computes the same
  metrics and makes the same best-checkpoint decision;
- rank-local training state (RNG streams, per-rank regularizer state) is gathered to rank 0,
  the only rank that writes (`gather_to_main`);
- decisions that must agree across ranks (stop on a signal, skip a non-finite step) are
  reduced with `any_rank` / `all_ranks`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from mtadv.data_utils.tokenize import TokenizedSplit
from mtadv.evaluate import Predictions


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def _reduce_flag(flag: bool, op: dist.ReduceOp) -> bool:
    if not is_distributed():
        return flag
    t = torch.tensor([int(flag)], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=op)
    return bool(t.item())


def any_rank(flag: bool) -> bool:
    """True on every rank if it is true on any rank."""
    return _reduce_flag(flag, dist.ReduceOp.MAX)


def all_ranks(flag: bool) -> bool:
    """True on every rank only if it is true on every rank."""
    return _reduce_flag(flag, dist.ReduceOp.MIN)


def gather_to_main(obj: Any) -> list[Any] | None:
    """[obj of rank 0, obj of rank 1, ...] on rank 0, None elsewhere ([obj] in one process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def shard_split(split: TokenizedSplit, rank: int, world_size: int) -> TokenizedSplit:
    """This rank's rows of an evaluation split (every world_size-th row, from row `rank`)."""
    if world_size == 1:
        return split
    rows = range(rank, len(split.data), world_size)
    return replace(split, data=split.data.select(rows))


def gather_predictions(preds: Predictions) -> Predictions:
    """Every rank's predictions, concatenated and put back in row order, on every rank."""
    if not is_distributed():
        return preds
    parts: list[Predictions | None] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, preds)
    idx = np.concatenate([p.example_idx for p in parts])
    order = np.argsort(idx, kind="stable")
    outputs = np.concatenate([p.outputs for p in parts])[order]
    labels = None if parts[0].labels is None else np.concatenate([p.labels for p in parts])[order]
    return Predictions(idx[order], outputs, labels)
