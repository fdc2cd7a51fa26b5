"""A ``kdkit tabular fit`` run written in the run-directory contract of the torch pipeline, so that
``kdkit report RUN_DIR`` and ``kdkit compare RUN_DIRS`` read it like any other run:

    config.yaml       what was run (data, teacher, student, alpha, folds, seed, output_dir), as YAML
    predictions.npz   test_labels and test_<role>: out-of-fold predictions on the training rows (each row predicted
                      by fold models that never saw it); train_<role>: what the students were taught against what
                      they learned: the teacher's out-of-fold probabilities, and each student's fold-mean
                      prediction on the rows it trained on. Logits are log probabilities (clipped at 1e-12).
    results.json      the same schema as a torch run: format, data, rows (teacher / student_alone / student_kd, with
                      kdkit.metrics' accuracy, macro F1, NLL, ECE, agreement and predictive KL, and cost), verdict;
                      plus ``scores`` (ROC AUC, log loss, threshold-tuned macro F1) and ``notes`` for the report
    table.md          the comparison table, then the threshold-tuned scores

Every file goes through kdkit.checkpoint.write_atomic, results.json last (its presence means the set is complete).
Cost: ``size_bytes`` is the pickled size of a row's fold models with their preprocessing, latency and throughput
the median wall time of its predict_proba (every fold model averaged, as deployed) on 1 and 256 training rows;
tree ensembles have no parameter count, so ``params`` is left out.
"""

from __future__ import annotations

import io
import json
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kdkit import metrics
from kdkit.checkpoint import write_atomic
from kdkit.report.rundir import FORMAT, LABELS, ROLES
from kdkit.run_guard import CONFIG, TRAINING_OUTPUTS
from kdkit.tabular.estimator import DistilledClassifier
from kdkit.verdict import run_verdict

EVALUATION = ("out-of-fold predictions on the training rows: every row is predicted by fold models that never saw "
              "it (the distilled student's targets came from teacher folds that had seen its held-out rows, which "
              "leans its scores slightly optimistic; bench/tabular.py scores on an outer held-out split)")


def logits(proba: np.ndarray) -> np.ndarray:
    """Log probabilities: logits whose softmax is the probabilities (the form predictions.npz stores)."""
    return np.log(np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1.0))


def _seconds_per_call(call: Any, repeats: int) -> float:
    call()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def cost(predict: Any, models: list, X: pd.DataFrame, quick: bool = False) -> dict[str, float]:
    """Pickled size of the fold models, latency of one row (ms) and throughput on 256 rows (/s) of `predict`."""
    batch = X.iloc[np.arange(256) % len(X)]
    latency = _seconds_per_call(lambda: predict(X.iloc[:1]), 3 if quick else 20)
    per_batch = _seconds_per_call(lambda: predict(batch), 2 if quick else 5)
    return {"size_bytes": len(pickle.dumps(models)), "latency_ms": 1000.0 * latency, "throughput": 256 / per_batch}


def predictions(distilled: DistilledClassifier, alone: DistilledClassifier, X: pd.DataFrame,
                codes: np.ndarray) -> dict[str, np.ndarray]:
    """predictions.npz's arrays (see the module docstring)."""
    taught = logits(distilled.teacher_oof_)
    return {
        "test_labels": codes, "test_teacher": taught, "test_student_alone": logits(alone.student_oof_),
        "test_student_kd": logits(distilled.student_oof_),
        "train_labels": codes, "train_teacher": taught, "train_student_alone": logits(alone.predict_proba(X)),
        "train_student_kd": logits(distilled.predict_proba(X)),
    }


def rows(preds: dict[str, np.ndarray], costs: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """One row per role: kdkit.metrics' classification report on the test_ arrays, then the cost."""
    out = []
    for role in ROLES:
        teacher = None if role == "teacher" else preds["test_teacher"]
        row: dict[str, Any] = {"model": LABELS[role], "role": role, **costs[role]}
        row.update(metrics.classification_report(preds[f"test_{role}"], preds["test_labels"], teacher))
        row["speedup"] = costs["teacher"]["latency_ms"] / costs[role]["latency_ms"]
        out.append(row)
    return out


def write_run(run_dir: Path, config: dict[str, Any], distilled: DistilledClassifier, alone: DistilledClassifier,
              X: pd.DataFrame, codes: np.ndarray, scores: dict[str, dict[str, Any]], data_name: str,
              quick_cost: bool = False, notes: list[str] | None = None) -> list[dict[str, Any]]:
    """Write config.yaml, predictions.npz, table.md and results.json of a pair fitted on the same rows X (labels as
    class codes `codes`); returns the rows.

    `scores` maps role -> the tabular scores (macro F1 at the tuned threshold, ROC AUC, ...), kept beside the
    contract's numbers in results.json and table.md."""
    import yaml

    from kdkit.report.table import to_markdown

    write_atomic(run_dir / CONFIG, yaml.safe_dump(config, sort_keys=False))
    preds = predictions(distilled, alone, X, codes)
    students = X[distilled.student_columns_]
    costs = {
        "teacher": cost(distilled.teacher_predict_proba, distilled.teacher_models_, X, quick_cost),
        "student_alone": cost(alone.predict_proba, alone.student_models_, students, quick_cost),
        "student_kd": cost(distilled.predict_proba, distilled.student_models_, students, quick_cost),
    }
    table = rows(preds, costs)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **preds)
    write_atomic(run_dir / TRAINING_OUTPUTS["predictions"], buffer.getvalue())
    class_names = [str(c) for c in distilled.classes_]
    summary = {
        "format": FORMAT,
        "kind": "tabular",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "device": "cpu",
        "data": {"name": data_name, "num_classes": len(class_names), "input_shape": [len(students.columns)],
                 "n_test": len(codes), "n_val": None, "class_names": class_names, "evaluation": EVALUATION},
        "rows": table,
        "verdict": run_verdict({r: preds[f"test_{r}"] for r in ROLES}, codes, table,
                               seed=int(config.get("seed") or 0)).as_dict(),
        "scores": scores,
        "notes": [f"test data here means {EVALUATION}", *(notes or [])],
    }
    markdown = to_markdown(table) + "\n" + _scores_markdown(scores) + "\n" + EVALUATION + "\n"
    write_atomic(run_dir / TRAINING_OUTPUTS["table"], markdown)
    write_atomic(run_dir / TRAINING_OUTPUTS["results"], json.dumps(summary, indent=2, default=_plain))
    return table


def _scores_markdown(scores: dict[str, dict[str, Any]]) -> str:
    from kdkit.tabular.evaluate import markdown_table

    return markdown_table({values.get("name") or LABELS[role]: values for role, values in scores.items()})


def _plain(value: Any) -> Any:
    """numpy scalars and arrays (e.g. class labels) as JSON values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
