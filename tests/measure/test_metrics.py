"""Metrics against scikit-learn or values computed by hand."""

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, log_loss
from torch import nn

from kdkit.measure import metrics
from kdkit.measure.cost import cost_report, count_params, throughput, weights_size_bytes


@pytest.fixture
def preds():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 4)) * 2
    labels = rng.integers(0, 4, size=200)
    return logits, labels


def test_accuracy_f1_nll_match_sklearn(preds):
    logits, labels = preds
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert metrics.accuracy(logits, labels) == pytest.approx(accuracy_score(labels, logits.argmax(1)))
    assert metrics.macro_f1(logits, labels) == pytest.approx(f1_score(labels, logits.argmax(1), average="macro"))
    assert metrics.nll(logits, labels) == pytest.approx(log_loss(labels, probs, labels=range(4)), rel=1e-9)


def test_macro_f1_counts_classes_never_predicted():
    logits = np.array([[5.0, 0, 0], [5.0, 0, 0], [0, 5.0, 0]])
    labels = np.array([0, 2, 1])  # class 2 never predicted: F1 0 for it
    assert metrics.macro_f1(logits, labels) == pytest.approx((2 / 3 + 1 + 0) / 3)


def test_ece_by_hand():
    # confidences 0.9 (correct), 0.9 (wrong), 0.6 (correct), 0.6 (correct)
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = np.array([0, 1, 0, 0])
    logits = np.log(probs)
    # bin of 0.9: acc 0.5, conf 0.9, weight 1/2; bin of 0.6: acc 1.0, conf 0.6, weight 1/2
    assert metrics.ece(logits, labels, n_bins=15) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    perfectly_calibrated = np.log(np.array([[1.0 - 1e-12, 1e-12]] * 3))
    assert metrics.ece(perfectly_calibrated, np.zeros(3, dtype=int)) == pytest.approx(0.0, abs=1e-9)


def test_agreement_and_predictive_kl(preds):
    logits, _ = preds
    teacher = logits + np.random.default_rng(1).normal(size=logits.shape)
    assert metrics.agreement(logits, teacher) == pytest.approx((logits.argmax(1) == teacher.argmax(1)).mean())
    expected = torch.nn.functional.kl_div(
        torch.log_softmax(torch.tensor(logits), 1), torch.log_softmax(torch.tensor(teacher), 1),
        reduction="batchmean", log_target=True,
    ).item()
    assert metrics.predictive_kl(teacher, logits) == pytest.approx(expected, rel=1e-9)
    assert metrics.predictive_kl(logits, logits) == pytest.approx(0.0, abs=1e-12)
    assert metrics.agreement(logits, logits) == 1.0


def test_classification_report_keys(preds):
    logits, labels = preds
    assert set(metrics.classification_report(logits, labels)) == {"accuracy", "macro_f1", "nll", "ece"}
    with_teacher = metrics.classification_report(logits, labels, logits)
    assert with_teacher["agreement"] == 1.0 and with_teacher["predictive_kl"] == pytest.approx(0.0, abs=1e-12)


def test_cost_report():
    model = nn.Sequential(nn.Linear(3, 2))
    assert count_params(model) == 8
    size = weights_size_bytes(model)
    assert 8 * 4 <= size < 8 * 4 + 512  # float32 payload plus a small safetensors header
    cost = cost_report(model, (3,), quick=True)
    assert cost["latency_ms"] > 0 and cost["throughput"] > 0 and cost["params"] == 8


def test_bigger_model_is_slower():
    small = nn.Linear(64, 10)
    big = nn.Sequential(*[nn.Linear(64, 64) for _ in range(40)], nn.Linear(64, 10))
    assert throughput(big, (64,), repeats=5) < throughput(small, (64,), repeats=5)
