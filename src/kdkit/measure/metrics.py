"""The quality numbers kdkit reports: generalization and fidelity to the teacher (cost, kdkit.measure.cost, measures
size, latency and throughput).

Classification metrics take logits (N, C) and integer labels (N,) as numpy arrays or tensors.
"""

from __future__ import annotations

import numpy as np
import torch

from kdkit.labels import UNLABELLED

ArrayLike = np.ndarray | torch.Tensor


def _np(a: ArrayLike) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def log_softmax(logits: ArrayLike) -> np.ndarray:
    z = _np(logits).astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(logits: ArrayLike) -> np.ndarray:
    return np.exp(log_softmax(logits))


def accuracy(logits: ArrayLike, labels: ArrayLike) -> float:
    return float((_np(logits).argmax(axis=1) == _np(labels)).mean())


def macro_f1(logits: ArrayLike, labels: ArrayLike, num_classes: int | None = None) -> float:
    """Unweighted mean of per-class F1 over all classes (absent classes count as 0, like scikit-learn)."""
    labels = _np(labels)
    classes = np.arange(num_classes if num_classes is not None else _np(logits).shape[1])
    from sklearn.metrics import f1_score  # here: scikit-learn (with scipy) takes longer to import than torch

    return float(f1_score(labels, _np(logits).argmax(axis=1), labels=classes, average="macro", zero_division=0))


def nll(logits: ArrayLike, labels: ArrayLike) -> float:
    """Mean negative log-likelihood of the true class (nats)."""
    labels = _np(labels).astype(int)
    return float(-log_softmax(logits)[np.arange(len(labels)), labels].mean())


def ece(logits: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> float:
    """Expected calibration error with equal-width confidence bins (Guo et al. 2017).

    ECE = sum_b |B_b|/N * |acc(B_b) - conf(B_b)|; bins are (k/n, (k+1)/n], the first one closed at 0.
    """
    probs = softmax(logits)
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == _np(labels)
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            total += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(total)


def agreement(student_logits: ArrayLike, teacher_logits: ArrayLike) -> float:
    """Top-1 agreement: fraction of samples where student and teacher predict the same class."""
    return float((_np(student_logits).argmax(axis=1) == _np(teacher_logits).argmax(axis=1)).mean())


def predictive_kl(teacher_logits: ArrayLike, student_logits: ArrayLike) -> float:
    """Mean over samples of KL(p_teacher || p_student) at temperature 1 (nats)."""
    return float(per_sample_kl(teacher_logits, student_logits).mean())


def per_sample_kl(teacher_logits: ArrayLike, student_logits: ArrayLike) -> np.ndarray:
    log_p, log_q = log_softmax(teacher_logits), log_softmax(student_logits)
    return (np.exp(log_p) * (log_p - log_q)).sum(axis=1)


def classification_report(
    logits: ArrayLike, labels: ArrayLike, teacher_logits: ArrayLike | None = None
) -> dict[str, float]:
    """Generalization metrics, plus fidelity metrics when the teacher's logits are given.

    Per-token logits (N, L, C) with labels (N, L) (sequence labelling) are scored over the labelled tokens: every
    token whose label is not UNLABELLED (-1) counts as one prediction."""
    logits, labels = _np(logits), _np(labels)
    if logits.ndim > 2:
        keep = labels.reshape(-1) != UNLABELLED
        logits, labels = logits.reshape(-1, logits.shape[-1])[keep], labels.reshape(-1)[keep]
        if teacher_logits is not None:
            teacher_logits = _np(teacher_logits).reshape(-1, logits.shape[-1])[keep]
    out = {
        "accuracy": accuracy(logits, labels),
        "macro_f1": macro_f1(logits, labels),
        "nll": nll(logits, labels),
        "ece": ece(logits, labels),
    }
    if teacher_logits is not None:
        out["agreement"] = agreement(logits, teacher_logits)
        out["predictive_kl"] = predictive_kl(teacher_logits, logits)
    return out
