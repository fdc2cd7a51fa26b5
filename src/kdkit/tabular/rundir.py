"""A ``kdkit tabular fit`` run written in the run-directory contract of the torch pipeline, so that
``kdkit report RUN_DIR`` and ``kdkit compare RUN_DIRS`` read it like any other run:

    config.yaml       what was run (data, teacher, student, alpha, folds, seed, output_dir), as YAML
    predictions.npz   test_labels and test_<role>: out-of-fold predictions on the training rows (each row predicted
                      by fold models that never saw it); train_<role>: what the students were taught against what
                      they learned: the teacher's out-of-fold probabilities, and each student's fold-mean
                      prediction on the rows it trained on; fitted_<role>: each saved model (the mean of its fold
                      models: what kdkit.load and kdkit predict answer) on the training rows. Logits are log
                      probabilities (clipped at 1e-12).
    results.json      the same schema as a torch run: format, data, rows (teacher / student_alone / student_kd, with
                      kdkit.metrics' accuracy, macro F1, NLL, ECE, agreement and predictive KL, and cost), verdict;
                      plus ``scores`` (ROC AUC, log loss, threshold-tuned macro F1) and ``notes`` for the report
    table.md          the comparison table, then the threshold-tuned scores

Every file goes through kdkit.checkpoint.write_atomic, results.json last (its presence means the set is complete).

``kdkit evaluate RUN_DIR`` (:func:`evaluate_tabular_run`) reads the training rows again (config.yaml's data.train),
makes the same folds (the seed and n_splits decide them) and predicts each fold's held-out rows with the saved fold
models: the out-of-fold predictions come back, written as evaluation_predictions.npz, evaluation.json and
evaluation.md beside the training's files, which stay as they are.
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
from kdkit.errors import RunDirError
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
    fitted = {"teacher": logits(distilled.teacher_predict_proba(X)), "student_alone": logits(alone.predict_proba(X)),
              "student_kd": logits(distilled.predict_proba(X))}
    return {
        "test_labels": codes, "test_teacher": taught, "test_student_alone": logits(alone.student_oof_),
        "test_student_kd": logits(distilled.student_oof_),
        "train_labels": codes, "train_teacher": taught, "train_student_alone": fitted["student_alone"],
        "train_student_kd": fitted["student_kd"], **{f"fitted_{role}": v for role, v in fitted.items()},
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


def saved_predictions(run_dir: Path, trust_joblib: bool = False) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """predictions.npz's arrays made again from the saved models (see the module docstring) and the loaded models
    by role; the training file must still be where config.yaml says."""
    import yaml
    from sklearn.model_selection import KFold, StratifiedKFold

    from kdkit.tabular.io import load_task
    from kdkit.tabular.load import ROLES as LOAD_ROLES
    from kdkit.tabular.load import load_role

    config = yaml.safe_load((run_dir / CONFIG).read_text(encoding="utf-8"))
    data, seed, n_splits = config["data"], int(config["seed"]), int(config["distill"]["n_splits"])
    if not Path(data["train"]).is_file():
        raise RunDirError(f"{data['train']} is missing: the out-of-fold predictions of {run_dir} are made from its "
                          "training rows; put the file back there")
    task = load_task(data["train"], data["target"], None, data.get("id_columns"), config["student"]["columns"],
                     config["teacher"]["columns"])
    models = {role: load_role(run_dir, role, trust_joblib=trust_joblib) for role in LOAD_ROLES}
    codes = np.searchsorted(models["student_kd"].classes_, np.asarray(task.y))
    splits = {"teacher": StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(task.X, codes),
              "student": list(KFold(n_splits, shuffle=True, random_state=seed).split(task.X))}
    preds: dict[str, np.ndarray] = {"test_labels": codes, "train_labels": codes}
    for role, model in models.items():
        oof = np.full((len(task.X), len(model.classes_)), np.nan)
        for fold, (_, held_out) in zip(model.student_models_, splits["teacher" if role == "teacher" else "student"],
                                       strict=True):
            oof[held_out] = fold.predict_proba(task.X.iloc[held_out])
        preds[f"test_{role}"] = logits(oof)
        preds[f"fitted_{role}"] = logits(model.predict_proba(task.X))
        preds[f"train_{role}"] = preds["test_teacher" if role == "teacher" else f"fitted_{role}"]
    return preds, {"models": models, "X": task.X, "config": config}


def evaluate_tabular_run(run_dir: str | Path, console: Any = None, trust_joblib: bool = False,
                         quick_cost: bool = True) -> list[dict[str, Any]]:
    """The run's three models measured again from their saved files (see the module docstring); returns the rows."""
    from kdkit.report.table import print_table, to_markdown
    from kdkit.run_guard import EVALUATION_OUTPUTS

    run_dir = Path(run_dir)
    preds, loaded = saved_predictions(run_dir, trust_joblib)
    models, X = loaded["models"], loaded["X"]
    costs = {role: cost(model.predict_proba, model.student_models_, X[model.student_columns_], quick_cost)
             for role, model in models.items()}
    table = rows(preds, costs)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **preds)
    write_atomic(run_dir / EVALUATION_OUTPUTS["predictions"], buffer.getvalue())
    write_atomic(run_dir / EVALUATION_OUTPUTS["table"], to_markdown(table) + "\n" + EVALUATION + "\n")
    summary = {"format": FORMAT, "kind": "tabular", "evaluated": True, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
               "rows": table, "verdict": run_verdict({r: preds[f"test_{r}"] for r in ROLES}, preds["test_labels"],
                                                     table, seed=int(loaded["config"].get("seed") or 0)).as_dict()}
    write_atomic(run_dir / EVALUATION_OUTPUTS["results"], json.dumps(summary, indent=2, default=_plain))
    print_table(table, title=f"kdkit tabular: {run_dir.name} (out-of-fold on the training rows, re-evaluated)",
                console=console)
    return table
