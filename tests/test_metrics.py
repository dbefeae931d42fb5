"""Metrics against scikit-learn/scipy, and the invariants of every task loss and divergence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import GLUE_YAML
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from mtadv.data_utils.metrics import METRICS, compute_metrics
from mtadv.evaluate import Predictions, split_metrics
from mtadv.losses import DIVERGENCES, TASK_LOSSES
from mtadv.taskdef import load_task_defs
from mtadv.tracking import constant_prediction_warnings, still_rising_note

# Every registered metric needs a reference here: (kind of data, reference in the same units).
REFERENCES = {
    "accuracy": ("class", lambda p, y: 100 * accuracy_score(y, p)),
    "f1": ("class", lambda p, y: 100 * f1_score(y, p)),
    "mcc": ("class", lambda p, y: 100 * matthews_corrcoef(y, p)),
    "pearson": ("score", lambda p, y: 100 * pearsonr(p, y)[0]),
    "spearman": ("score", lambda p, y: 100 * spearmanr(p, y)[0]),
}


def random_pair(kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "class":
        y = rng.integers(0, 2, 200)
        p = np.where(rng.random(200) < 0.7, y, 1 - y)  # correlated with y, not equal
        return p, y
    y = rng.uniform(0, 5, 200)
    return y + rng.normal(0, 1.5, 200), y


@pytest.mark.parametrize("name", METRICS.names())
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metric_matches_reference(name, seed):
    assert name in REFERENCES, f"metric {name!r} has no reference implementation in this test"
    kind, ref = REFERENCES[name]
    p, y = random_pair(kind, seed)
    assert METRICS.get(name)(p, y) == pytest.approx(ref(p, y), abs=1e-9)


def test_known_values():
    p, y = np.array([1, 1, 0, 0, 1]), np.array([1, 0, 0, 1, 1])
    got = compute_metrics(["accuracy", "f1"], p, y)
    assert got == pytest.approx({"accuracy": 60.0, "f1": 100 * 2 / 3})  # P = R = 2/3
    assert METRICS.get("pearson")(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 7.0])) == pytest.approx(
        100 * 0.9933992677987828
    )
    assert METRICS.get("spearman")(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 7.0])) == pytest.approx(100.0)


@pytest.mark.parametrize("name", ["pearson", "spearman"])
def test_correlation_of_a_constant_prediction_is_zero_not_nan(name):
    assert METRICS.get(name)(np.full(10, 2.5), np.arange(10.0)) == 0.0


def test_unknown_metric_lists_the_known_ones():
    with pytest.raises(KeyError, match="accuracy"):
        compute_metrics(["bleu"], np.zeros(2), np.zeros(2))


# ---------------------------------------------------------------- losses and divergences


def logits_pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)


def inputs_for(name: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """mse compares (B,) scores; every other divergence compares (B, C) logits."""
    a, b = logits_pair(seed)
    return (a[:, 0], b[:, 0]) if name == "mse" else (a, b)


@pytest.mark.parametrize("name", DIVERGENCES.names())
def test_divergence_is_zero_at_equality_and_positive_otherwise(name):
    fn = DIVERGENCES.get(name)
    a, b = inputs_for(name)
    assert fn(a, a.clone()).item() == pytest.approx(0.0, abs=1e-6)
    assert fn(a, b).item() > 1e-4
    assert fn(a, b).ndim == 0


@pytest.mark.parametrize("name", DIVERGENCES.names())
def test_divergence_rejects_shapes_that_would_broadcast(name):
    a, b = inputs_for(name)
    with pytest.raises(ValueError, match="shapes"):
        DIVERGENCES.get(name)(a, b.unsqueeze(-1) if name == "mse" else b[:, :2])


def test_symmetric_kl_is_symmetric_and_the_sum_of_both_kls():
    a, b = logits_pair()
    sym = DIVERGENCES.get("sym_kl")
    assert sym(a, b).item() == pytest.approx(sym(b, a).item(), rel=1e-6)
    p, q = F.softmax(a, -1), F.softmax(b, -1)
    both = ((p * (p / q).log()).sum(-1) + (q * (q / p).log()).sum(-1)).mean()
    assert sym(a, b).item() == pytest.approx(both.item(), rel=1e-5)


def test_kl_direction_is_target_to_model():
    a, b = logits_pair()
    p_model, p_target = F.softmax(a, -1), F.softmax(b, -1)
    expected = (p_target * (p_target / p_model).log()).sum(-1).mean()
    assert DIVERGENCES.get("kl")(a, b).item() == pytest.approx(expected.item(), rel=1e-5)


def test_js_and_hellinger_are_bounded():
    a, b = logits_pair()
    far_a, far_b = 50 * torch.eye(3)[:2], 50 * torch.eye(3)[1:]  # near one-hot, disjoint supports
    assert DIVERGENCES.get("js")(far_a, far_b).item() == pytest.approx(math.log(2), rel=1e-3)
    assert DIVERGENCES.get("hellinger")(far_a, far_b).item() == pytest.approx(1.0, rel=1e-3)
    assert DIVERGENCES.get("js")(a, b).item() < math.log(2)


def test_mse_rejects_b_against_b1():
    """The reference implementation broadcast (B,) against (B, 1) into a (B, B) loss."""
    scores = torch.randn(4)
    with pytest.raises(ValueError, match=r"\(4,\) and \(4, 1\)"):
        TASK_LOSSES.get("mse")(scores, scores.unsqueeze(-1))
    assert TASK_LOSSES.get("mse")(scores, scores + 1).item() == pytest.approx(1.0)


def test_cross_entropy_ignores_minus_100():
    logits = torch.randn(4, 3)
    labels = torch.tensor([0, -100, 2, -100])
    expected = F.cross_entropy(logits[[0, 2]], labels[[0, 2]])
    assert TASK_LOSSES.get("ce")(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)


def test_losses_are_computed_in_fp32_for_half_inputs():
    a, b = logits_pair()
    out = DIVERGENCES.get("sym_kl")(a.bfloat16(), b.bfloat16())
    assert out.dtype == torch.float32


@pytest.fixture(scope="module")
def tasks():
    return load_task_defs(GLUE_YAML)


def _predictions(predicted: list[int], labels: list[int]) -> Predictions:
    probs = np.eye(2)[predicted] * 0.8 + 0.1  # (N, 2) class probabilities, argmax = predicted
    return Predictions(np.arange(len(labels)), probs, np.array(labels))


def test_classification_splits_report_their_top_class_share(tasks):
    got = split_metrics(tasks["rte"], _predictions([0, 0, 1, 0], [0, 1, 1, 0]))
    assert got == pytest.approx({"accuracy": 75.0, "top_class_share": 75.0})
    constant = split_metrics(tasks["rte"], _predictions([1, 1, 1, 1], [0, 1, 1, 0]))
    assert constant["top_class_share"] == 100.0 and constant["accuracy"] == 50.0


def test_regression_splits_have_no_top_class_share(tasks):
    scores = Predictions(np.arange(3), np.array([1.0, 2.0, 4.0]), np.array([1.0, 2.5, 3.0]))
    assert set(split_metrics(tasks["stsb"], scores)) == {"pearson", "spearman"}


def test_the_summary_warns_of_a_constant_prediction_and_only_then():
    results = {
        "rte": {"dev": {"accuracy": 52.7, "top_class_share": 100.0}},
        "mrpc": {"dev": {"accuracy": 80.1, "top_class_share": 79.2}},
        "stsb": {"dev": {"pearson": 80.0}},
    }
    (line,) = constant_prediction_warnings(results)
    assert line.startswith("warning: rte dev: every example got the same class")
    assert "--learning_rate" in line and "regularizer" not in line  # rte has no regularizer here


def test_the_constant_prediction_warning_points_a_regularized_task_at_its_strength():
    results = {"rte": {"dev": {"accuracy": 52.7, "top_class_share": 100.0}}}
    (line,) = constant_prediction_warnings(results, strength_by_task={"rte": ["adv_eps", "adv_weight"]})
    assert "smaller strength (adv_eps, adv_weight)" in line and "--learning_rate" not in line


def test_the_warning_names_each_methods_own_strength_settings():
    """The teacher alone is weakened by its μ, AWP by γ: the warning must not send users to adv_eps."""
    from mtadv.adversarial import ADV_METHODS
    from mtadv.config import AdvConfig
    from mtadv.trainer import _strength_names

    cls = ADV_METHODS.get
    assert cls("bregman").strength == ("bregman_mu",) and cls("awp").strength == ("adv_lr",)
    assert cls("smart").strength == ("adv_eps", "adv_weight")
    both = _strength_names([cls("smart").__new__(cls("smart")), cls("bregman").__new__(cls("bregman"))])
    assert both == ["adv_eps", "adv_weight", "bregman_mu"]
    settings = AdvConfig()
    for name in ADV_METHODS.names():  # every method names what weakens it, by settings that exist
        assert cls(name).strength and all(hasattr(settings, s) for s in cls(name).strength), name


def test_the_summary_notes_a_dev_score_still_rising_at_the_last_step_of_a_multi_epoch_run():
    assert "more --epochs" in still_rising_note(best_step=468, last_step=468, epochs_completed=3)
    assert still_rising_note(best_step=312, last_step=468, epochs_completed=3) == ""  # peaked earlier
    assert still_rising_note(best_step=156, last_step=156, epochs_completed=1) == ""  # one evaluation proves nothing
