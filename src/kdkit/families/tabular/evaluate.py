"""Scores of tabular probabilities (macro F1, ROC AUC, accuracy, log loss) and the macro-F1 threshold."""

from __future__ import annotations

import numpy as np

METRICS = ("macro_f1", "roc_auc", "accuracy", "log_loss")
LOWER_IS_BETTER = {"log_loss"}
THRESHOLDS = np.round(np.arange(0.01, 1.0, 0.01), 2)


def labels_from(proba: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Class codes: argmax, or for binary ``P(class 1) >= threshold`` when a threshold is given."""
    if proba.shape[1] == 2 and threshold is not None:
        return (proba[:, 1] >= threshold).astype(int)
    return proba.argmax(axis=1)


def best_threshold(codes: np.ndarray, p_positive: np.ndarray) -> float:
    """Threshold on P(class 1) maximising macro F1 (grid 0.01..0.99; ties go to the one nearest 0.5)."""
    from sklearn.metrics import f1_score  # here, not at the top: the CLI imports METRICS and must start fast

    scores = [f1_score(codes, (p_positive >= t).astype(int), average="macro", zero_division=0)
              for t in THRESHOLDS]
    best = max(scores)
    candidates = THRESHOLDS[np.isclose(scores, best)]
    return float(candidates[np.abs(candidates - 0.5).argmin()])


def scores(codes: np.ndarray, proba: np.ndarray, threshold: float | None = None) -> dict[str, float]:
    """All four metrics for class codes 0..K-1 and an (n, K) probability matrix."""
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    k = proba.shape[1]
    p = np.clip(proba, 1e-15, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    pred = labels_from(p, threshold)
    auc = roc_auc_score(codes, p[:, 1]) if k == 2 else roc_auc_score(codes, p, multi_class="ovr", labels=np.arange(k))
    return {
        "macro_f1": float(f1_score(codes, pred, average="macro", labels=np.arange(k), zero_division=0)),
        "roc_auc": float(auc),
        "accuracy": float(accuracy_score(codes, pred)),
        "log_loss": float(log_loss(codes, p, labels=np.arange(k))),
    }


def markdown_table(rows: dict[str, dict[str, float]], first: str = "model") -> str:
    """One row per model, one column per metric, 4 decimals."""
    head = f"| {first} | " + " | ".join(METRICS) + " |\n|---|" + "---:|" * len(METRICS) + "\n"
    body = "".join(f"| {name} | " + " | ".join(f"{vals[m]:.4f}" for m in METRICS) + " |\n"
                   for name, vals in rows.items())
    return head + body
