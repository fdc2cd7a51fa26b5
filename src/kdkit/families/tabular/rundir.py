"""A ``kdkit tabular fit`` run written in the run-directory contract of the torch pipeline, so that
``kdkit report RUN_DIR`` and ``kdkit compare RUN_DIRS`` read it like any other run:

    config.yaml       what was run (data, teacher, student, alpha, folds, held-out rows, seed, output_dir), as YAML
    predictions.npz   test_labels and test_<role>: the saved models' predictions (each the mean of its fold models,
                      as kdkit.load and kdkit predict give it) on the held-out rows (kdkit.families.tabular.holdout),
                      which no model saw while it was fitted or chosen; train_<role>: what the students were taught
                      against what they learned on the fitting rows: the teacher's out-of-fold probabilities, and each
                      student's fold-mean prediction on the rows it trained on; oof_labels and oof_<role>: the
                      out-of-fold predictions on the fitting rows. Logits are log probabilities (clipped at 1e-12).
    results.json      the same schema as a torch run: format, data, rows (teacher / student_alone / student_kd, with
                      kdkit.measure.metrics' accuracy, macro F1, NLL, ECE, agreement and predictive KL on the held-out
                      rows, and cost), verdict (held-out rows, paired), diagnosis (kdkit.diagnosis); plus ``scores``
                      (ROC AUC, log loss, macro F1 at the threshold tuned out-of-fold, on the held-out rows),
                      ``oof_scores`` (the same out of fold: optimistic for the distilled student, never the verdict) and
                      ``notes`` for the report, and ``cost`` (the plan that timed the cost: full or quick)
    table.md          the comparison table, then the held-out and the out-of-fold scores
    holdout.csv       when the held-out rows come from the training file: their line numbers in it

Every file goes through kdkit.io.checkpoint.write_atomic, results.json last (its presence means the set is complete).

``kdkit evaluate RUN_DIR`` (:func:`evaluate_tabular_run`) reads the files config.yaml names again, holds out the
same rows (the same files, share and seed choose them; holdout.csv checks it) and predicts them with the saved
models, which gives test_<role> again; the same folds of the fitting rows (the seed and n_splits decide them) give
the out-of-fold predictions and with them the diagnosis. It writes evaluation_predictions.npz (the arrays of
predictions.npz), evaluation.json and evaluation.md beside the training's files, which stay as they are.
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

from kdkit.diagnosis import Diagnosis, Split, diagnose, prediction_signals
from kdkit.errors import RunDirError
from kdkit.families.tabular.estimator import DistilledClassifier
from kdkit.families.tabular.holdout import HeldOut
from kdkit.io.checkpoint import write_atomic
from kdkit.measure import metrics
from kdkit.run.rundir import CONFIG, HOLDOUT, LABELS, RESULTS, RESULTS_FORMAT, ROLES, TRAINING_OUTPUTS
from kdkit.verdict import run_verdict

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


QUICK_TIMING_NOTE = ("latency and throughput were timed with the quick plan (3 and 2 calls instead of 20 and 5): "
                     "noisier than the full plan; `kdkit evaluate RUN_DIR` times them again")


def timing(quick: bool) -> dict[str, Any]:
    """How :func:`cost` times a model (results.json's ``cost``, where every family records its plan): the plan and
    the timed calls per batch size."""
    return {"plan": "quick", "repeats": {"latency": 3, "throughput": 2}} if quick else \
        {"plan": "full", "repeats": {"latency": 20, "throughput": 5}}


def cost(predict: Any, models: list, X: pd.DataFrame, quick: bool = False) -> dict[str, float]:
    """Pickled size of the fold models, latency of one row (ms) and throughput on 256 rows (/s) of `predict`."""
    batch = X.iloc[np.arange(256) % len(X)]
    repeats = timing(quick)["repeats"]
    latency = _seconds_per_call(lambda: predict(X.iloc[:1]), repeats["latency"])
    per_batch = _seconds_per_call(lambda: predict(batch), repeats["throughput"])
    return {"size_bytes": len(pickle.dumps(models)), "latency_ms": 1000.0 * latency, "throughput": 256 / per_batch}


def class_codes(model: DistilledClassifier, y: pd.Series) -> np.ndarray:
    """Labels as the model's class codes 0..K-1."""
    return np.searchsorted(model.classes_, np.asarray(y))


def predictions(distilled: DistilledClassifier, alone: DistilledClassifier, held: HeldOut) -> dict[str, np.ndarray]:
    """predictions.npz's arrays (see the module docstring) of a pair just fitted on held.X."""
    predict = {"teacher": distilled.teacher_predict_proba, "student_alone": alone.predict_proba,
               "student_kd": distilled.predict_proba}
    oof = {"teacher": distilled.teacher_oof_, "student_alone": alone.student_oof_,
           "student_kd": distilled.student_oof_}
    return arrays(predict, oof, distilled, held)


def arrays(predict: dict[str, Any], oof: dict[str, np.ndarray], model: DistilledClassifier,
           held: HeldOut) -> dict[str, np.ndarray]:
    """predictions.npz's arrays from each role's predict_proba and out-of-fold probabilities; `model` gives the
    class codes."""
    fit_codes = class_codes(model, held.y)
    return {
        "test_labels": class_codes(model, held.y_held),
        **{f"test_{role}": logits(predict[role](held.X_held)) for role in ROLES},
        "train_labels": fit_codes, "train_teacher": logits(oof["teacher"]),
        **{f"train_{role}": logits(predict[role](held.X)) for role in ("student_alone", "student_kd")},
        "oof_labels": fit_codes, **{f"oof_{role}": logits(oof[role]) for role in ROLES},
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
    """One row per role: kdkit.measure.metrics' classification report on the test_ arrays, then the cost."""
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

    from kdkit.families.tabular.holdout import lines_csv
    from kdkit.report.table import to_markdown

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
        "format": RESULTS_FORMAT,
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
        "cost": timing(quick_cost),
        "notes": [f"test data here means {evaluation(held)}",
                  f"{RESULTS}'s oof_scores are out-of-fold scores on the fitting rows: {OUT_OF_FOLD}",
                  *([QUICK_TIMING_NOTE] if quick_cost else []), *(notes or [])],
    }
    markdown = (to_markdown(table) + "\n" + evaluation(held) + "\n\n" + _scores_markdown(scores)
                + "\nOut of fold on the fitting rows (" + OUT_OF_FOLD + "):\n\n" + _scores_markdown(oof_scores))
    write_atomic(run_dir / TRAINING_OUTPUTS["table"], markdown)
    if held.lines is not None:  # (an earlier run's list is gone: --overwrite cleared the run's files)
        write_atomic(run_dir / HOLDOUT, lines_csv(held.lines))
    write_atomic(run_dir / TRAINING_OUTPUTS["results"], json.dumps(summary, indent=2, default=_plain))
    return table


def _scores_markdown(scores: dict[str, dict[str, Any]]) -> str:
    from kdkit.families.tabular.evaluate import markdown_table

    return markdown_table({values.get("name") or LABELS[role]: values for role, values in scores.items()})


def _plain(value: Any) -> Any:
    """numpy scalars and arrays (e.g. class labels) as JSON values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def held_out_again(run_dir: Path, config: dict[str, Any]) -> HeldOut:
    """The run's fitting and held-out rows, chosen again as `kdkit tabular fit` chose them from config.yaml's files,
    share and seed; a file that is gone, or a training file that no longer gives holdout.csv's rows, is refused."""
    from kdkit.families.tabular.holdout import choose_held_out, lines_csv
    from kdkit.families.tabular.io import load_task

    data, n_splits = config["data"], int(config["distill"]["n_splits"])
    holdout = data.get("holdout")
    if not isinstance(holdout, dict):
        raise RunDirError(f"{run_dir / CONFIG} names no held-out rows (data.holdout): the run was written before "
                          "kdkit held rows out for the verdict; fit it again ('kdkit tabular fit ... --overwrite')")
    test = data.get("test") if holdout.get("test_file") else None
    for path in (data["train"], test):
        if path is not None and not Path(path).is_file():
            raise RunDirError(f"{path} is missing: {run_dir}'s models are measured again on the rows it held out "
                              "from it; put the file back there")
    task = load_task(data["train"], data["target"], test, data.get("id_columns"), config["student"]["columns"],
                     config["teacher"]["columns"], n_splits=n_splits)
    held = choose_held_out(task, float(holdout["fraction"]), int(holdout["seed"]), n_splits, data["train"], test)
    listed = run_dir / HOLDOUT
    if held.lines is not None and listed.is_file() and listed.read_text(encoding="utf-8") != lines_csv(held.lines):
        raise RunDirError(f"{data['train']} no longer gives the held-out rows {listed} lists: the file changed "
                          "since the run; put the run's training file back")
    return held


def _out_of_fold(model: DistilledClassifier, X: pd.DataFrame, folds: list) -> np.ndarray:
    """Each fold's rows predicted by the saved fold model that did not train on them."""
    oof = np.full((len(X), len(model.classes_)), np.nan)
    for fold_model, (_, rows_out) in zip(model.student_models_, folds, strict=True):
        oof[rows_out] = fold_model.predict_proba(X.iloc[rows_out])
    return oof


def saved_predictions(models: dict[str, DistilledClassifier], held: HeldOut, seed: int,
                      n_splits: int) -> dict[str, np.ndarray]:
    """predictions.npz's arrays made again from the loaded models (kdkit.families.tabular.load.load_role) on the run's
    rows: the teacher's folds are stratified by class, the students' are not, as DistilledClassifier makes them."""
    from sklearn.model_selection import KFold, StratifiedKFold

    codes = class_codes(models["student_kd"], held.y)
    folds = {"teacher": list(StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(held.X, codes)),
             "student": list(KFold(n_splits, shuffle=True, random_state=seed).split(held.X))}
    oof = {role: _out_of_fold(model, held.X, folds["teacher" if role == "teacher" else "student"])
           for role, model in models.items()}
    return arrays({role: model.predict_proba for role, model in models.items()}, oof, models["student_kd"], held)


def evaluate_tabular_run(run_dir: str | Path, console: Any = None, trust_joblib: bool = False,
                         quick_cost: bool = True) -> list[dict[str, Any]]:
    """The run's three models measured again from their saved files on its held-out rows (see the module
    docstring); returns the rows."""
    import yaml

    from kdkit.families.tabular.load import load_role
    from kdkit.report.runinfo import show_verdict
    from kdkit.report.table import print_table, to_markdown
    from kdkit.run.rundir import EVALUATION_OUTPUTS

    run_dir = Path(run_dir)
    config = yaml.safe_load((run_dir / CONFIG).read_text(encoding="utf-8"))
    held = held_out_again(run_dir, config)
    models = {role: load_role(run_dir, role, trust_joblib=trust_joblib) for role in ROLES}
    seed = int(config.get("seed") or 0)
    preds = saved_predictions(models, held, seed, int(config["distill"]["n_splits"]))
    costs = {role: cost(model.predict_proba, model.student_models_, held.X[model.student_columns_], quick_cost)
             for role, model in models.items()}
    table = rows(preds, costs)
    diagnosis = tabular_diagnosis(models["student_kd"], preds, held)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **preds)
    write_atomic(run_dir / EVALUATION_OUTPUTS["predictions"], buffer.getvalue())
    write_atomic(run_dir / EVALUATION_OUTPUTS["table"], to_markdown(table) + "\n" + evaluation(held) + "\n")
    summary = {"format": RESULTS_FORMAT, "kind": "tabular", "evaluated": True,
               "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
               "data": {"n_test": len(held.y_held), "n_train": len(held.y), "evaluation": evaluation(held),
                        "held_out": held.as_dict()},
               "rows": table, "verdict": run_verdict({r: preds[f"test_{r}"] for r in ROLES}, preds["test_labels"],
                                                     table, seed=seed, why=diagnosis.findings[0]).as_dict(),
               "diagnosis": diagnosis.as_dict(), "cost": timing(quick_cost)}
    write_atomic(run_dir / EVALUATION_OUTPUTS["results"], json.dumps(summary, indent=2, default=_plain))
    print_table(table, title=f"kdkit tabular: {run_dir.name} (the {len(held.y_held)} held-out rows, re-evaluated)",
                console=console)
    show_verdict(run_dir, console, EVALUATION_OUTPUTS["results"])
    return table
