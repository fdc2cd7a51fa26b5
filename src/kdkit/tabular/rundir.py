"""A ``kdkit tabular fit`` run written in the run-directory contract of the torch pipeline, so that
``kdkit report RUN_DIR`` and ``kdkit compare RUN_DIRS`` read it like any other run:

    config.yaml       what was run (data, teacher, student, alpha, folds, held-out rows, seed, output_dir), as YAML
    predictions.npz   test_labels and test_<role>: predictions on the held-out rows (kdkit.tabular.holdout), which no
                      model saw while it was fitted or chosen; train_<role>: what the students were taught against
                      what they learned on the fitting rows: the teacher's out-of-fold probabilities, and each
                      student's fold-mean prediction on the rows it trained on; oof_labels and oof_<role>: the
                      out-of-fold predictions on the fitting rows. Logits are log probabilities (clipped at 1e-12).
    results.json      the same schema as a torch run: format, data, rows (teacher / student_alone / student_kd, with
                      kdkit.metrics' accuracy, macro F1, NLL, ECE, agreement and predictive KL on the held-out rows,
                      and cost), verdict (held-out rows, paired), diagnosis (kdkit.diagnosis); plus ``scores`` (ROC
                      AUC, log loss, macro F1 at the threshold tuned out-of-fold, on the held-out rows),
                      ``oof_scores`` (the same out of fold: optimistic for the distilled student, never the verdict)
                      and ``notes`` for the report
    table.md          the comparison table, then the held-out and the out-of-fold scores
    holdout.csv       when the held-out rows come from the training file: their line numbers in it

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
from kdkit.diagnosis import Diagnosis, Split, diagnose, prediction_signals
from kdkit.report.rundir import FORMAT, LABELS, ROLES
from kdkit.run_guard import CONFIG, TRAINING_OUTPUTS
from kdkit.tabular.estimator import DistilledClassifier
from kdkit.tabular.holdout import HeldOut
from kdkit.verdict import run_verdict

HOLDOUT_FILE = "holdout.csv"

OUT_OF_FOLD = ("out-of-fold scores on the fitting rows lean optimistic for the distilled student (the teacher fold "
               "models that wrote its targets saw the rows it is scored on): they are shown, never used for the "
               "verdict")


def evaluation(held: HeldOut) -> str:
    """What "test data" means in a tabular run."""
    return f"held-out rows: {held.source}, which no model saw while it was fitted or chosen"


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


def class_codes(model: DistilledClassifier, y: pd.Series) -> np.ndarray:
    """Labels as the model's class codes 0..K-1."""
    return np.searchsorted(model.classes_, np.asarray(y))


def predictions(distilled: DistilledClassifier, alone: DistilledClassifier, held: HeldOut) -> dict[str, np.ndarray]:
    """predictions.npz's arrays (see the module docstring)."""
    taught = logits(distilled.teacher_oof_)
    fit_codes = class_codes(distilled, held.y)
    return {
        "test_labels": class_codes(distilled, held.y_held),
        "test_teacher": logits(distilled.teacher_predict_proba(held.X_held)),
        "test_student_alone": logits(alone.predict_proba(held.X_held)),
        "test_student_kd": logits(distilled.predict_proba(held.X_held)),
        "train_labels": fit_codes, "train_teacher": taught, "train_student_alone": logits(alone.predict_proba(held.X)),
        "train_student_kd": logits(distilled.predict_proba(held.X)),
        "oof_labels": fit_codes, "oof_teacher": taught, "oof_student_alone": logits(alone.student_oof_),
        "oof_student_kd": logits(distilled.student_oof_),
    }


def tabular_diagnosis(distilled: DistilledClassifier, preds: dict[str, np.ndarray], held: HeldOut) -> Diagnosis:
    """The diagnosis of a tabular run, from the fitting rows alone (the held-out rows give the verdict): on the
    training side, the teacher's out-of-fold probabilities (what the student learns from) and the students'
    fold-mean predictions (what they learned); held out, every model's out-of-fold predictions (each row by fold
    models that never saw it; the rules read the teacher's and the student alone's, which are not optimistic)."""
    split = {where: Split({r: preds[f"{where}_{r}"] for r in ROLES}, preds[f"{where}_labels"])
             for where in ("train", "oof")}
    only = set(distilled.teacher_columns_) - set(distilled.student_columns_)
    signals = prediction_signals("tabular", "out-of-fold rows", split["train"], split["oof"], unit="rows",
                                 n_train=len(held.y), teacher_only_inputs=len(only))
    return diagnose(signals)


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
              held: HeldOut, scores: dict[str, dict[str, Any]], oof_scores: dict[str, dict[str, Any]],
              data_name: str, quick_cost: bool = False, notes: list[str] | None = None) -> list[dict[str, Any]]:
    """Write config.yaml, predictions.npz, table.md, holdout.csv and results.json of a pair fitted on held.X and
    measured on the held-out rows; returns the rows.

    `scores` and `oof_scores` map role -> the tabular scores (macro F1 at the tuned threshold, ROC AUC, ...) on the
    held-out rows and out of fold, kept beside the contract's numbers in results.json and table.md."""
    import yaml

    from kdkit.report.table import to_markdown
    from kdkit.tabular.holdout import lines_csv

    write_atomic(run_dir / CONFIG, yaml.safe_dump(config, sort_keys=False))
    preds = predictions(distilled, alone, held)
    X = held.X
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
    diagnosis = tabular_diagnosis(distilled, preds, held)
    summary = {
        "format": FORMAT,
        "kind": "tabular",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "device": "cpu",
        "data": {"name": data_name, "num_classes": len(class_names), "input_shape": [len(students.columns)],
                 "n_test": len(held.y_held), "n_val": None, "n_train": len(held.y), "class_names": class_names,
                 "evaluation": evaluation(held), "held_out": held.as_dict()},
        "rows": table,
        "verdict": run_verdict({r: preds[f"test_{r}"] for r in ROLES}, preds["test_labels"], table,
                               seed=int(config.get("seed") or 0), why=diagnosis.findings[0]).as_dict(),
        "diagnosis": diagnosis.as_dict(),
        "scores": scores,
        "oof_scores": oof_scores,
        "notes": [f"test data here means {evaluation(held)}",
                  f"results.json's oof_scores are out-of-fold scores on the fitting rows: {OUT_OF_FOLD}",
                  *(notes or [])],
    }
    markdown = (to_markdown(table) + "\n" + evaluation(held) + "\n\n" + _scores_markdown(scores)
                + "\nOut of fold on the fitting rows (" + OUT_OF_FOLD + "):\n\n" + _scores_markdown(oof_scores))
    write_atomic(run_dir / TRAINING_OUTPUTS["table"], markdown)
    if held.lines is not None:
        write_atomic(run_dir / HOLDOUT_FILE, lines_csv(held.lines))
    else:  # held-out rows from the test file: an earlier run's list would name rows this run fitted on
        (run_dir / HOLDOUT_FILE).unlink(missing_ok=True)
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
