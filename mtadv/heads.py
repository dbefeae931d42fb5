"""Compatibility: the heads live with their task types in mtadv.tasks (labeled.py, mlm.py); the HEADS
registry in mtadv.tasks.base. Register your own head with `mtadv.register_head`."""

from mtadv.tasks.base import HEADS, HeadBuilder
from mtadv.tasks.labeled import PooledHead, ScoreHead, classification_head, regression_head
from mtadv.tasks.mlm import MaskedLMHead, masked_lm_head

__all__ = [
    "HEADS",
    "HeadBuilder",
    "MaskedLMHead",
    "PooledHead",
    "ScoreHead",
    "classification_head",
    "masked_lm_head",
    "regression_head",
]
