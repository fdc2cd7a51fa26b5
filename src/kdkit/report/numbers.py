"""The report's numbers, all computed from saved predictions through kdkit.measure.metrics (so they match
results.json); only cost (params, size, latency, throughput, speed-up) is read from results.json."""

from __future__ import annotations

from typing import Any

import numpy as np

from kdkit.measure import metrics
from kdkit.report.rundir import RunData, Split
from kdkit.run.rundir import LABELS, RESULTS, ROLES, STUDENTS

COST_KEYS = ("params", "size_bytes", "latency_ms", "latency_ms_q1", "latency_ms_q3", "throughput", "throughput_q1",
             "throughput_q3", "speedup", "speedup_low", "speedup_high", "speedup_certain")
QUALITY_KEYS = ("accuracy", "macro_f1", "nll", "ece", "agreement", "predictive_kl")
SPLITS = {"train": "distillation data", "test": "test data"}


def model_rows(run: RunData) -> list[dict[str, Any]]:
    """One row per model: test generalization and fidelity (from predictions) and cost (from results.json)."""
    saved = run.rows
    rows = []
    for role in ROLES:
        teacher = None if role == "teacher" else run.test.logits["teacher"]
        row: dict[str, Any] = {"model": LABELS[role], "role": role}
        row.update(metrics.classification_report(run.test.logits[role], run.test.labels, teacher))
        row.update({k: saved[role][k] for k in COST_KEYS if saved[role].get(k) is not None})
        rows.append(row)
    return rows


def mismatches(run: RunData, rows: list[dict[str, Any]], tol: float = 1e-6) -> list[str]:
    """Metrics where results.json disagrees with the predictions (e.g. one file was replaced by hand)."""
    saved = run.rows
    out = []
    for row in rows:
        for key in QUALITY_KEYS:
            old = saved[row["role"]].get(key)
            if old is not None and key in row and abs(old - row[key]) > tol:
                out.append(f"{row['model']} {key}: {RESULTS} {old:.4f}, predictions {row[key]:.4f}")
    return out


def split_fidelity(split: Split, role: str) -> dict[str, float | None]:
    """Agreement and predictive KL with the teacher on every row of a split (labels are not needed), and
    accuracy on its labelled rows."""
    logits, teacher = split.logits[role], split.logits["teacher"]
    mask = split.labelled
    return {
        "agreement": metrics.agreement(logits, teacher),
        "predictive_kl": metrics.predictive_kl(teacher, logits),
        "accuracy": metrics.accuracy(logits[mask], split.labels[mask]) if mask.any() else None,
        "n": int(len(split.labels)),
        "n_labelled": int(mask.sum()),
    }


def fidelity(run: RunData) -> dict[str, dict[str, dict[str, float | None]]]:
    """student role -> split ('train', 'test') -> fidelity numbers; 'train' absent for older runs."""
    splits = {"train": run.train, "test": run.test}
    return {role: {name: split_fidelity(split, role) for name, split in splits.items() if split is not None}
            for role in STUDENTS}


def per_class(split: Split) -> dict[str, dict[str, np.ndarray]]:
    """Per true class: accuracy of each model and agreement of each student with the teacher (NaN when a class
    has no labelled sample)."""
    mask = split.labelled
    labels = split.labels[mask]
    k = split.logits["teacher"].shape[1]
    preds = {role: logits[mask].argmax(axis=1) for role, logits in split.logits.items()}
    counts = np.bincount(labels, minlength=k).astype(float)

    def rate(hits: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.bincount(labels, weights=hits.astype(float), minlength=k) / counts

    return {
        "accuracy": {role: rate(p == labels) for role, p in preds.items()},
        "agreement": {role: rate(preds[role] == preds["teacher"]) for role in STUDENTS},
    }


def reliability(logits: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per confidence bin: count, mean confidence and accuracy, with the same bins as metrics.ece."""
    probs = metrics.softmax(logits)
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "count": count,
            "confidence": np.bincount(bins, weights=conf, minlength=n_bins) / count,
            "accuracy": np.bincount(bins, weights=correct.astype(float), minlength=n_bins) / count,
            "edges": np.linspace(0.0, 1.0, n_bins + 1),
        }


def confusion(teacher_logits: np.ndarray, student_logits: np.ndarray) -> np.ndarray:
    """counts[i, j] = samples the teacher labels i and the student labels j (the diagonal is agreement)."""
    k = teacher_logits.shape[1]
    t, s = teacher_logits.argmax(axis=1), student_logits.argmax(axis=1)
    return np.bincount(t * k + s, minlength=k * k).reshape(k, k)


def curves(history: list[dict[str, Any]]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """model -> metric key -> [(epoch, value)] for every numeric train_*/val_* key in metrics.jsonl."""
    out: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for record in history:
        model, epoch = record.get("model"), record.get("epoch")
        if model is None or epoch is None:
            continue
        for key, value in record.items():
            if key.startswith(("train_", "val_")) and isinstance(value, (int, float)) and not isinstance(value, bool):
                out.setdefault(model, {}).setdefault(key, []).append((int(epoch), float(value)))
    return out


def loss_terms(series: dict[str, list[tuple[int, float]]]) -> list[str]:
    """The train_* keys of one model that are losses (total and every term), not accuracies."""
    return sorted(k for k in series if k.startswith("train_") and k != "train_accuracy")
