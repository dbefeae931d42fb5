"""Multi-task sampler: coverage, task proportions, determinism, DDP sharding, length grouping."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from mtadv.data_utils.sampler import MultiTaskSampler

SIZES = {"big": 1000, "mid": 100, "small": 10}


def lengths_of(sizes: dict[str, int], seed: int = 0) -> dict[str, list[int]]:
    rng = np.random.default_rng(seed)
    return {t: rng.integers(5, 129, size=n).tolist() for t, n in sizes.items()}


def sampler(**kw) -> MultiTaskSampler:
    args = {"lengths": lengths_of(SIZES), "batch_size": 8, "seed": 1, **kw}
    return MultiTaskSampler(**args)


@pytest.mark.parametrize("group_by_length", [False, True])
def test_proportional_uses_every_batch_of_every_task_once_per_epoch(group_by_length):
    s = sampler(mode="proportional", group_by_length=group_by_length)
    for epoch in range(3):
        plan = s.epoch_plan(epoch)
        assert len(plan) == len(s) == sum(math.ceil(n / 8) for n in SIZES.values())
        for task, n in SIZES.items():
            batches = [b.indices for b in plan if b.task == task]
            assert len(batches) == math.ceil(n / 8)
            assert sorted(i for b in batches for i in b) == list(range(n))  # each example exactly once


def test_proportional_interleaves_tasks():
    """Batches are shuffled across tasks, not run task after task."""
    tasks = [b.task for b in sampler(mode="proportional").epoch_plan(0)]
    switches = sum(a != b for a, b in zip(tasks, tasks[1:]))
    assert switches > 2 * (len(SIZES) - 1)  # task after task would switch only twice


@pytest.mark.parametrize("mode,temperature", [("temperature", 2.0), ("temperature", 5.0), ("uniform", 1.0)])
def test_task_frequencies_follow_n_to_the_one_over_t(mode, temperature):
    s = sampler(mode=mode, temperature=temperature)
    power = 0.0 if mode == "uniform" else 1.0 / temperature
    weights = {t: n**power for t, n in SIZES.items()}
    expected = {t: w / sum(weights.values()) for t, w in weights.items()}
    assert s.task_probabilities() == pytest.approx(expected)
    draws = Counter(b.task for epoch in range(20) for b in s.epoch_plan(epoch))
    total = sum(draws.values())
    for t, p in expected.items():
        sigma = math.sqrt(p * (1 - p) / total)
        assert abs(draws[t] / total - p) < 5 * sigma, (t, draws[t] / total, p)


def test_temperature_one_is_proportional_in_expectation():
    s = sampler(mode="temperature", temperature=1.0)
    assert s.task_probabilities() == pytest.approx({t: n / 1110 for t, n in SIZES.items()})


def test_oversampled_small_task_still_cycles_through_its_examples():
    """Uniform sampling draws 'small' far more often than it has batches: each pass is a full reshuffle."""
    s = sampler(mode="uniform")
    seen = [i for b in s.epoch_plan(0) if b.task == "small" for i in b.indices]
    assert len(seen) > 3 * SIZES["small"]
    counts = Counter(seen)
    assert max(counts.values()) - min(counts.values()) <= 1


@pytest.mark.parametrize("mode", ["proportional", "temperature", "uniform"])
def test_deterministic_for_a_seed_and_different_across_epochs_and_seeds(mode):
    plan = sampler(mode=mode, seed=7).epoch_plan(0)
    assert sampler(mode=mode, seed=7).epoch_plan(0) == plan
    assert sampler(mode=mode, seed=7).epoch_plan(1) != plan
    assert sampler(mode=mode, seed=8).epoch_plan(0) != plan


def test_iterate_resumes_at_a_position():
    s = sampler(mode="temperature")
    full = list(s.iterate(2))
    assert list(s.iterate(2, start=17)) == full[17:]


@pytest.mark.parametrize("world_size", [2, 3])
def test_ddp_shards_are_disjoint_and_cover_the_global_batch(world_size):
    ranks = [sampler(mode="proportional", world_size=world_size, rank=r) for r in range(world_size)]
    plan = ranks[0].epoch_plan(0)
    shards = [list(s.iterate(0)) for s in ranks]
    assert all(len(sh) == len(plan) for sh in shards)
    for i, batch in enumerate(plan):
        parts = [sh[i] for sh in shards]
        assert {p.task for p in parts} == {batch.task}  # every rank works on the same task
        assert len({len(p.indices) for p in parts}) == 1 and parts[0].indices  # equal, non-empty
        flat = [j for p in parts for j in p.indices]
        assert len(flat) == len(set(flat)) and sorted(flat) == sorted(batch.indices)


def padding(s: MultiTaskSampler, lengths: dict[str, list[int]]) -> int:
    """Pad tokens of an epoch when each batch is padded to its longest example."""
    total = 0
    for b in s.epoch_plan(0):
        lens = [lengths[b.task][i] for i in b.indices]
        total += max(lens) * len(lens) - sum(lens)
    return total


def test_length_grouping_reduces_padding():
    lengths = lengths_of(SIZES)
    grouped = padding(sampler(mode="proportional", group_by_length=True), lengths)
    shuffled = padding(sampler(mode="proportional", group_by_length=False), lengths)
    assert grouped < 0.5 * shuffled, (grouped, shuffled)


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="sampling mode"):
        sampler(mode="roundrobin")
