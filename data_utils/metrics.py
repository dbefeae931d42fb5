"""Evaluation metrics by name, computed with scikit-learn and scipy.

Each takes predictions (class indices, or scores for regression) and gold labels as 1-D numpy
arrays and returns a float in percent (correlations scaled to 100 as GLUE reports them).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from mtadv.registry import Registry

MetricFn = Callable[[np.ndarray, np.ndarray], float]
METRICS: Registry[MetricFn] = Registry("metric")


def _correlation(fn) -> MetricFn:
    def metric(preds: np.ndarray, labels: np.ndarray) -> float:
        if np.std(preds) == 0 or np.std(labels) == 0:
            return 0.0  # undefined for a constant prediction; report no correlation
        return 100.0 * float(fn(preds, labels)[0])

    return metric


METRICS.register("accuracy")(lambda p, y: 100.0 * float(accuracy_score(y, p)))
METRICS.register("f1")(lambda p, y: 100.0 * float(f1_score(y, p)))
METRICS.register("mcc")(lambda p, y: 100.0 * float(matthews_corrcoef(y, p)))
METRICS.register("pearson")(_correlation(pearsonr))
METRICS.register("spearman")(_correlation(spearmanr))


def compute_metrics(names: tuple[str, ...] | list[str], preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {name: METRICS.get(name)(preds, labels) for name in names}
