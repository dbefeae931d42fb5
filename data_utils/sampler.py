"""Multi-task batch sampling: every batch comes from one task.

Modes:
- proportional (MT-DNN's default): every batch of every task once per epoch, in shuffled order,
  so a task is drawn in proportion to its size;
- temperature: each step draws a task with p ∝ n^(1/T) (T = 1 is proportional in expectation);
- uniform: each step draws a task with equal probability.

The plan for an epoch depends only on (seed, epoch), so runs are reproducible and resumable at
any position. Under DDP every rank computes the same plan and takes its own disjoint shard
(indices[rank::world_size]) of each global batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from transformers.trainer_pt_utils import get_length_grouped_indices


@dataclass(frozen=True)
class TaskBatch:
    task: str
    indices: list[int]  # row indices into the task's tokenized dataset, this rank's shard


class MultiTaskSampler:
    def __init__(
        self,
        lengths: dict[str, list[int]],
        batch_size: int,
        mode: str = "proportional",
        temperature: float = 1.0,
        seed: int = 0,
        group_by_length: bool = False,
        world_size: int = 1,
        rank: int = 0,
    ) -> None:
        if mode not in ("proportional", "temperature", "uniform"):
            raise ValueError(f"unknown sampling mode {mode!r}")
        self.lengths, self.batch_size, self.mode = lengths, batch_size, mode
        self.temperature, self.seed, self.group_by_length = temperature, seed, group_by_length
        self.world_size, self.rank = world_size, rank
        self.tasks = list(lengths)

    def task_probabilities(self) -> dict[str, float]:
        sizes = np.array([len(self.lengths[t]) for t in self.tasks], dtype=float)
        power = {"proportional": 1.0, "temperature": 1.0 / self.temperature, "uniform": 0.0}[self.mode]
        weights = sizes**power
        return dict(zip(self.tasks, (weights / weights.sum()).tolist()))

    def __len__(self) -> int:
        """Batches per epoch: the number of batches of all tasks together."""
        return sum(math.ceil(len(v) / self.batch_size) for v in self.lengths.values())

    def epoch_plan(self, epoch: int) -> list[TaskBatch]:
        """The whole epoch's sequence of global batches (before sharding)."""
        rng = np.random.default_rng([self.seed, epoch])
        batches = {t: self._task_batches(t, rng) for t in self.tasks}
        if self.mode == "proportional":
            plan = [TaskBatch(t, b) for t in self.tasks for b in batches[t]]
            return [plan[i] for i in rng.permutation(len(plan))]
        probs = self.task_probabilities()
        draws = rng.choice(len(self.tasks), size=len(self), p=[probs[t] for t in self.tasks])
        cursor = {t: 0 for t in self.tasks}
        plan = []
        for d in draws:
            t = self.tasks[d]
            if cursor[t] == len(batches[t]):  # task exhausted: reshuffle it and start over
                batches[t], cursor[t] = self._task_batches(t, rng), 0
            plan.append(TaskBatch(t, batches[t][cursor[t]]))
            cursor[t] += 1
        return plan

    def iterate(self, epoch: int, start: int = 0):
        """Yield this rank's shard of each batch of the epoch, from batch `start` on."""
        for batch in self.epoch_plan(epoch)[start:]:
            yield TaskBatch(batch.task, batch.indices[self.rank :: self.world_size])

    def _task_batches(self, task: str, rng: np.random.Generator) -> list[list[int]]:
        n = len(self.lengths[task])
        if self.group_by_length:
            gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
            order = get_length_grouped_indices(self.lengths[task], self.batch_size, generator=gen)
        else:
            order = rng.permutation(n).tolist()
        batches = [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        if self.world_size > 1:
            # Every rank needs a non-empty shard of equal size for DDP's averaged gradients.
            batches = [b[: len(b) - len(b) % self.world_size] for b in batches]
            batches = [b for b in batches if b]
        return batches
