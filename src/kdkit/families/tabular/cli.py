"""``kdkit tabular fit``, ``predict`` and ``tune``: the privileged-column recipe as one command.

Bad input exits with code 2 and one ``error: ...`` line on stderr (the main CLI does the same for every
KdkitError; catching it here keeps this app usable on its own).
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from kdkit.errors import ConfigError, DataError, KdkitError, plain_warnings
from kdkit.families.tabular.evaluate import METRICS
from kdkit.run.rundir import BEST, CONFIG, LABELS, MODELS, PREDICTIONS, RESULTS, STUDY, TABLE, RunDir

if TYPE_CHECKING:  # the libraries themselves are imported inside the commands: `--help` stays fast
    import pandas as pd

    from kdkit.families.tabular.estimator import DistilledClassifier
    from kdkit.families.tabular.holdout import HeldOut
    from kdkit.families.tabular.io import TabularTask

app = typer.Typer(help="Tabular distillation: a teacher on every training column, a student on the columns "
                  "that exist at prediction time.", no_args_is_help=True, add_completion=False)
GUIDE = "Guide: docs/guides/tables.md (in the repository; `make docs` builds the site)"  # the last line of --help
console = Console()

TRAIN = typer.Option(..., "--train", help="training CSV (all columns, with the target)")
TEST = typer.Option(None, "--test", help="test CSV: its columns (minus --id) become the student's columns")
TARGET = typer.Option(..., "--target", help="name of the target column in the train file")
IDS = typer.Option([], "--id", help="id column(s), excluded from features and copied to predictions")
STUDENT_COLS = typer.Option(None, "--student-columns", help="comma-separated; default: the test file's columns")
TEACHER_COLS = typer.Option(None, "--teacher-columns", help="comma-separated; default: every train column")
TEACHER = typer.Option("catboost", "--teacher", help="catboost, lightgbm, xgboost, mlp, logreg, ... ")
STUDENT = typer.Option("lightgbm", "--student", help="catboost, lightgbm, xgboost, mlp, logreg, ...")
MODE = typer.Option("auto", "--student-mode", help="auto, soft, regress, expand")
SPLITS = typer.Option(5, "--n-splits", help="folds for the teacher's out-of-fold probabilities and the student")
SEED = typer.Option(0, "--seed")
N_JOBS = typer.Option(None, "--n-jobs", help="threads of each CatBoost, LightGBM, XGBoost or forest model (-1: every "
                      "core; default: each library's own setting), as scikit-learn's n_jobs")
RUN_DIR = typer.Option(None, "--run-dir", help="output directory (default: runs/tabular-<time>)")
KEEP = typer.Option([], "--keep-column", help="a column that looks like a row id (named like one, or whole numbers "
                    "unique per row and in order) but is a real feature: use it as one")
HOLDOUT = typer.Option(0.2, "--holdout", help="share of the training rows held out for the verdict, stratified (unless "
                       "--test holds the target and every teacher column: then its rows are held out)")
HOLDOUT_SEED = typer.Option(0, "--holdout-seed", help="seed of the held-out split; fit and tune with the same one "
                            "hold out the same rows")


def _user_errors(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with plain_warnings():
                return fn(*args, **kwargs)
        except KdkitError as err:
            print(f"error: {err}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [c.strip() for c in text.split(",") if c.strip()]


def _json(text: str | None, what: str) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{what} is not valid JSON ({err.msg}); example: '{{\"depth\": 6}}'") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must be a JSON object, e.g. '{{\"depth\": 6}}'")
    return value


def _best(path: Path) -> dict:
    """best.yaml of `kdkit tabular tune` (or best.json, which it wrote before it wrote YAML like `kdkit tune`)."""
    import yaml

    try:
        best = yaml.safe_load(Path(path).read_text(encoding="utf-8"))  # JSON is YAML too
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        raise ConfigError(f"{path}: cannot read; give the {BEST} written by 'kdkit tabular tune'") from None
    if not isinstance(best, dict) or not {"teacher_params", "student_params", "alpha"} <= set(best):
        raise ConfigError(f"{path}: not a {BEST} from 'kdkit tabular tune'")
    return best


def _check_n_jobs(n_jobs: int | None) -> None:
    if n_jobs == 0:  # before the run directory is claimed: nothing is written for a command that cannot run
        raise ConfigError("--n-jobs must be a non-zero number of threads (-1: every core), or left out")


def _check_names(teacher: str, student: str, student_mode: str) -> None:
    """Model names and the student mode, before any file is read: a typo costs no waiting."""
    import difflib

    from kdkit.families.tabular.learners import MODES
    from kdkit.families.tabular.models import resolve

    resolve(teacher, "teacher")
    resolve(student, "student")
    modes = ["auto", *MODES]
    if student_mode not in modes:
        close = difflib.get_close_matches(student_mode, modes, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(f"unknown --student-mode '{student_mode}'; {hint}choose one of: {', '.join(modes)}")


def _check_files(*paths: Path | None) -> None:
    for path in paths:
        if path is not None and path.is_dir():
            raise DataError(f"{path} is a directory; give a CSV file")
        if path is not None and not path.is_file():
            raise DataError(f"{path}: file not found")


def _precheck_run_dir(run_dir: Path | None, overwrite: bool) -> None:
    """The run directory's refusals (a file, a finished, unfinished or locked run) before any data is read."""
    from kdkit.run import guard as run_guard

    if run_dir is None:
        return  # a new directory named by the time
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--run-dir {run_dir} is a file; give a directory (new or from an earlier run)")
    run_guard.precheck(run_dir, overwrite=overwrite, resumable=False)


def _run_dir(run_dir: Path | None, kind: str) -> Path:
    path = run_dir or Path("runs") / f"tabular-{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--run-dir {path} is a file; give a directory (new or from an earlier run)")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _claimed_run_dir(run_dir: Path | None, overwrite: bool) -> tuple[Path, Any]:
    """The fit's run directory, locked and guarded like a torch run's (kdkit.run.guard): a directory in use by
    another run, or holding a finished or interrupted run, is refused with one line unless --overwrite."""
    from kdkit.run import guard as run_guard

    out = _run_dir(run_dir, "fit")
    return out, run_guard.claim(out, overwrite=overwrite, resumable=False)


def _load(train: Path, test: Path | None, target: str, ids: list[str], student_columns: str | None,
          teacher_columns: str | None, n_splits: int | None = None) -> TabularTask:
    from kdkit.families.tabular.io import load_task

    return load_task(train, target, test, ids, _split(student_columns), _split(teacher_columns), n_splits=n_splits)


def _refuse_ids(task: TabularTask, train: Path, keep: list[str]) -> None:
    """A feature that looks like a row id stops the command unless --keep-column names it (see id_columns)."""
    from kdkit.families.tabular.id_columns import id_message, likely_ids

    unknown = [c for c in keep if c not in task.X.columns]
    if unknown:
        raise DataError(f"--keep-column {unknown[0]}: not a feature column of {train}; check the name (an --id "
                        "column is never a feature)")
    found = likely_ids(task.X, [c for c in task.X.columns if c not in keep])
    if found:
        raise DataError(id_message(str(train), found))


def _print_table(title: str, rows: dict[str, dict[str, float]]) -> None:
    table = Table(title=title)
    table.add_column("model")
    for m in METRICS:
        table.add_column(m, justify="right")
    for name, vals in rows.items():
        table.add_row(name, *(f"{vals[m]:.4f}" for m in METRICS))
    from kdkit.report.table import print_unwrapped

    print_unwrapped(table, console)


def _predictions(model: DistilledClassifier, task: TabularTask) -> pd.DataFrame:
    return _prediction_frame(model, task.test, task.test_ids)


def _prediction_frame(model: DistilledClassifier, rows: pd.DataFrame, ids: pd.DataFrame) -> pd.DataFrame:
    """id column(s), then P(classes[1]) (binary) or one prob_<class> per class, then the label."""
    proba = model.predict_proba(rows)
    out = ids.reset_index(drop=True).copy()
    classes = list(model.classes_)
    if len(classes) == 2:
        out["probability"] = proba[:, 1]
    else:
        for k, c in enumerate(classes):
            out[f"prob_{c}"] = proba[:, k]
    from kdkit.families.tabular.evaluate import labels_from

    out["label"] = model.classes_[labels_from(proba, model.threshold_)]  # model.predict, from the same proba
    return out


@app.command(epilog=GUIDE)
@_user_errors
def fit(
    train: Path = TRAIN,
    test: Path = TEST,
    target: str = TARGET,
    id_columns: list[str] = IDS,
    student_columns: str = STUDENT_COLS,
    teacher_columns: str = TEACHER_COLS,
    teacher: str = TEACHER,
    student: str = STUDENT,
    student_mode: str = MODE,
    alpha: float = typer.Option(0.0, "--alpha", help="student target = (1-alpha)*teacher + alpha*label"),
    n_splits: int = SPLITS,
    seed: int = SEED,
    n_jobs: int = N_JOBS,
    threshold: bool = typer.Option(True, "--threshold/--no-threshold",
                                   help="binary: tune the decision threshold for macro F1 on out-of-fold rows"),
    teacher_params: str = typer.Option(None, "--teacher-params", help="JSON object, e.g. '{\"depth\": 6}'"),
    student_params: str = typer.Option(None, "--student-params", help="JSON object"),
    from_tune: Path = typer.Option(None, "--from-tune", help="best.yaml of 'kdkit tabular tune': its "
                                   "teacher/student parameters and alpha replace the options above"),
    keep_columns: list[str] = KEEP,
    holdout: float = HOLDOUT,
    holdout_seed: int = HOLDOUT_SEED,
    run_dir: Path = RUN_DIR,
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a run already in --run-dir"),
) -> None:
    """Teacher out-of-fold -> distilled student; compare with the student alone on held-out rows; predict the test
    file."""
    from kdkit.families.tabular.estimator import DistilledClassifier
    from kdkit.families.tabular.holdout import check_fraction
    from kdkit.families.tabular.rundir import write_run

    # every name, number and path first: nothing is read before they are known to be usable
    _check_names(teacher, student, student_mode)
    check_fraction(holdout)
    best, teacher_params, student_params, alpha = _tuned(from_tune, teacher_params, student_params, alpha)
    if not 0.0 <= alpha < 1.0:
        raise ConfigError(f"--alpha must be in [0, 1) (alpha 1 is the 'student alone' row), got {alpha}")
    _check_n_jobs(n_jobs)
    fixed_teacher, fixed_student = _json(teacher_params, "--teacher-params"), _json(student_params, "--student-params")
    _check_files(train, test)
    _precheck_run_dir(run_dir, overwrite)
    task = _load(train, test, target, id_columns, student_columns, teacher_columns, n_splits)
    _refuse_ids(task, train, keep_columns)
    held = _held_out(task, holdout, holdout_seed, n_splits, train, test)
    if best is not None:
        _check_tuned_on_same_rows(best, held, holdout, holdout_seed, from_tune)
    out, lock = _claimed_run_dir(run_dir, overwrite)
    common = dict(student=student, student_columns=task.student_columns, student_params=fixed_student,
                  student_mode=student_mode, n_splits=n_splits, random_state=seed, n_jobs=n_jobs,
                  tune_threshold=threshold, verbose=1)  # verbose: a plain line per fold model
    distilled = DistilledClassifier(teacher=teacher, teacher_columns=task.teacher_columns, alpha=alpha,
                                    teacher_params=fixed_teacher, **common)
    alone = _fit_both(distilled, common, task, held, out)
    names = {"teacher": f"teacher {teacher} ({len(task.teacher_columns)} cols)",
             "student_alone": f"student alone {student} ({len(task.student_columns)} cols)",
             "student_kd": f"distilled {student} (alpha={alpha:g})"}
    held_scores, oof_scores = _scores(distilled, alone, held, names, threshold)
    name = Path(train).stem
    config = {  # the run-directory contract's config.yaml: compare pools runs that differ only by seed
        "kind": "tabular",
        "data": {"name": name, "train": str(train), "test": None if test is None else str(test), "target": target,
                 "id_columns": list(id_columns), "keep_columns": list(keep_columns),
                 "holdout": {"fraction": holdout, "seed": holdout_seed, "test_file": held.lines is None}},
        "teacher": {"name": teacher, "params": distilled.teacher_params, "columns": list(task.teacher_columns)},
        "student": {"name": student, "params": common["student_params"], "columns": list(task.student_columns),
                    "mode": student_mode},
        "distill": {"alpha": alpha, "n_splits": n_splits, "tune_threshold": threshold},
        "seed": seed,
        "output_dir": str(out),
    }
    _save_models(out, distilled, alone, task)
    with console.status("measuring size and latency of the three models..."):
        table = write_run(out, config, distilled, alone, held, held_scores, oof_scores, name)
    cut = " (threshold tuned for macro F1 out of fold)" if threshold and len(distilled.classes_) == 2 else ""
    _print_run(out, name, table, held, held_scores, oof_scores, cut)
    lock.release()


def _tuned(from_tune: Path | None, teacher_params: str | None, student_params: str | None,
           alpha: float) -> tuple[dict[str, Any] | None, str | None, str | None, float]:
    """The best trial of `from_tune` (a best.yaml of `kdkit tabular tune`), whose parameters and alpha replace the
    flags' when given; (best or None, teacher params, student params, alpha)."""
    _check_files(from_tune)
    if from_tune is None:
        return None, teacher_params, student_params, alpha
    best = _best(from_tune)
    return best, json.dumps(best["teacher_params"]), json.dumps(best["student_params"]), float(best["alpha"])


def _save_models(out: Path, distilled: Any, alone: Any, task: TabularTask) -> None:
    """Both fitted students (every row of the table can be loaded again) and the test file's predictions."""
    from kdkit.families.tabular.load import ALONE
    from kdkit.families.tabular.save import save_distiller

    save_distiller(distilled, RunDir(out).models)
    save_distiller(alone, RunDir(out).models / ALONE)
    if task.test is not None:
        _predictions(distilled, task).to_csv(RunDir(out).test_predictions, index=False)
        console.print(f"predictions for {len(task.test)} test rows: {RunDir(out).test_predictions}")


def _fit_both(distilled: Any, common: dict[str, Any], task: TabularTask, held: HeldOut, out: Path) -> Any:
    """The distilled student (the teacher's out-of-fold models first) and the student alone, on the fitting rows,
    each announced; returns the student alone."""
    from kdkit.families.tabular.estimator import DistilledClassifier

    n_splits = common["n_splits"]
    console.print(f"{len(held.y)} rows to fit on; teacher sees {len(task.teacher_columns)} columns, "
                  f"student {len(task.student_columns)}; run directory {out}", highlight=False)
    console.print(f"held out for the verdict: {held.source}; no model sees them while it is fitted",
                  highlight=False)
    console.print(f"distilled student: the teacher's {n_splits} out-of-fold models, then {n_splits} student folds",
                  highlight=False)
    distilled.fit(held.X, held.y)
    console.print(f"student alone: {n_splits} folds on hard labels", highlight=False)
    return DistilledClassifier(**{**common, "student_mode": "auto"}, alpha=1.0).fit(held.X, held.y)


def _print_run(out: Path, name: str, table: Any, held: HeldOut, held_scores: dict[str, Any],
               oof_scores: dict[str, Any], cut: str) -> None:
    """The three-row table, the held-out and out-of-fold scores, the verdict and where the run is."""
    from kdkit.report.runinfo import show_verdict
    from kdkit.report.table import print_table

    print_table(table, title=f"kdkit tabular: {name} (the {len(held.y_held)} held-out rows)", console=console)
    _print_table(f"held-out rows{cut}", {values["name"]: values for values in held_scores.values()})
    _print_table(f"out of fold on the {len(held.y)} fitting rows: optimistic for the distilled student, not the "
                 "verdict", {values["name"]: values for values in oof_scores.values()})
    show_verdict(out, console)
    console.print(f"run directory: {out} ({CONFIG}, {RESULTS}, {PREDICTIONS}, {TABLE}, {MODELS}/); "
                  f"next: kdkit report {out}", highlight=False, soft_wrap=True)


def _held_out(task: TabularTask, holdout: float, seed: int, n_splits: int, train: Path, test: Path | None) -> HeldOut:
    """The verdict's held-out rows (kdkit.families.tabular.holdout), chosen before anything is fitted or written."""
    from kdkit.families.tabular.holdout import choose_held_out

    held = choose_held_out(task, holdout, seed, n_splits, str(train), None if test is None else str(test))
    if task.test_y is not None and held.lines is not None:
        missing = [c for c in task.X.columns if task.test is not None and c not in task.test.columns]
        console.print(f"{test} holds the target but not every teacher column ({', '.join(map(str, missing[:3]))}"
                      f"...): the verdict is measured on {held.source} instead", highlight=False, soft_wrap=True)
    return held


def _check_tuned_on_same_rows(best: dict, held: HeldOut, fraction: float, seed: int, path: Path) -> None:
    """Parameters tuned with other held-out rows were chosen on rows this fit holds out: refused."""
    tuned = best.get("holdout")
    if not isinstance(tuned, dict):
        return  # a best.yaml written before tuning held rows out
    from_file = held.lines is None
    same_split = from_file or (tuned.get("fraction"), tuned.get("seed")) == (fraction, seed)
    if bool(tuned.get("test_file")) != from_file or not same_split:
        raise ConfigError(f"{path} was tuned holding out {tuned.get('source')}; this fit would hold out "
                          f"{held.source}, rows the search chose on. Give the same --holdout "
                          f"{tuned.get('fraction')} and --holdout-seed {tuned.get('seed')} (and --test file)")


def _scores(distilled: DistilledClassifier, alone: DistilledClassifier, held: HeldOut, names: dict[str, str],
            threshold: bool) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Per role, the tabular scores on the held-out rows and out of fold on the fitting rows; a binary decision
    threshold (tuned for macro F1) is chosen out of fold and applied to the held-out rows as it is."""
    import numpy as np

    from kdkit.families.tabular.evaluate import best_threshold, scores
    from kdkit.families.tabular.rundir import class_codes

    fit_codes, held_codes = class_codes(distilled, held.y), class_codes(distilled, held.y_held)
    binary = len(distilled.classes_) == 2
    proba = {"teacher": (distilled.teacher_oof_, distilled.teacher_predict_proba(held.X_held)),
             "student_alone": (alone.student_oof_, alone.predict_proba(held.X_held)),
             "student_kd": (distilled.student_oof_, distilled.predict_proba(held.X_held))}
    held_scores, oof_scores = {}, {}
    for role, (oof, on_held) in proba.items():
        cut = best_threshold(fit_codes, oof[:, 1]) if (threshold and binary) else None
        oof_scores[role] = {"name": names[role], **scores(fit_codes, oof, cut), "threshold": cut}
        held_scores[role] = {"name": names[role], **scores(held_codes, np.asarray(on_held), cut), "threshold": cut}
    return held_scores, oof_scores


@app.command(epilog=GUIDE)
@_user_errors
def predict(
    run: Path = typer.Argument(..., help="run directory of 'kdkit tabular fit' (or its models/ folder)"),
    input_csv: Path = typer.Option(..., "--input", help="CSV with the student's columns"),
    id_columns: list[str] = IDS,
    output: Path = typer.Option(None, "--output", help="predictions CSV (default: predictions-<input name>.csv "
                                "in the run directory)"),
    trust: bool = typer.Option(False, "--trust", help="allow joblib pickles (scikit-learn models, dense "
                               "encoders): only for run directories you made yourself"),
    model: str = typer.Option("student_kd", "--model", help="student_kd, student_alone or teacher (the teacher "
                              "needs its columns)"),
) -> None:
    """Predict new rows with the saved fold models of a 'kdkit tabular fit' run (the distilled student's by
    default)."""
    from kdkit.families.tabular.save import MANIFEST

    run_dir = run.parent if (run / MANIFEST).is_file() else run  # its models/ folder given directly
    preds = predict_rows(run_dir, input_csv, model, id_columns, trust)
    console.print(f"predicted {len(preds):,} rows of {input_csv} with the {model.replace('_', ' ')}'s fold models "
                  "(their mean)", highlight=False)
    target = output or (run / f"predictions-{input_csv.stem}.csv")
    target.parent.mkdir(parents=True, exist_ok=True)
    preds.to_csv(target, index=False)
    console.print(f"predictions for {len(preds)} rows: {target}")


def predict_rows(run: Path, input_csv: Path, role: str = "student_kd", id_columns: list[str] | None = None,
                 trust: bool = False) -> pd.DataFrame:
    """id column(s) (or the row number), the probabilities and the label of each row of `input_csv` by the run's
    `role` (kdkit.families.tabular.load.load_role); a missing column or id is one DataError line."""
    import pandas as pd

    from kdkit.families.tabular.io import check_numeric, read_table
    from kdkit.families.tabular.load import load_role

    id_columns = list(id_columns or [])
    _check_files(input_csv)
    model = load_role(run, role, trust_joblib=trust)
    frame = read_table(input_csv, set(model.categorical_columns_) | set(id_columns))
    missing = [c for c in model.student_columns_ if c not in frame.columns]
    if missing:
        raise DataError(f"{input_csv}: missing {'teacher' if role == 'teacher' else 'student'} column(s) "
                        f"{', '.join(map(str, missing))}; "
                        f"the model needs {', '.join(map(str, model.student_columns_))}")
    numeric = [c for c in model.student_columns_ if c not in set(model.categorical_columns_)]
    check_numeric(frame, input_csv, set(numeric), numeric)  # numeric in training: text there is a mistake
    missing_ids = [c for c in id_columns if c not in frame.columns]
    if missing_ids:
        raise DataError(f"{input_csv}: id column(s) {', '.join(missing_ids)} not found; check --id")
    ids = frame[id_columns] if id_columns else pd.DataFrame({"row": range(len(frame))})
    return _prediction_frame(model, frame[model.student_columns_], ids)


@app.command(epilog=GUIDE)
@_user_errors
def tune(
    train: Path = TRAIN,
    test: Path = TEST,
    target: str = TARGET,
    id_columns: list[str] = IDS,
    student_columns: str = STUDENT_COLS,
    teacher_columns: str = TEACHER_COLS,
    teacher: str = TEACHER,
    student: str = STUDENT,
    student_mode: str = MODE,
    n_splits: int = SPLITS,
    seed: int = SEED,
    n_jobs: int = N_JOBS,
    n_trials: int = typer.Option(30, "--n-trials", help="trials run by this process"),
    metric: str = typer.Option("log_loss", "--metric", help=", ".join(METRICS)),
    storage: str = typer.Option(None, "--storage",
                                help="database URL shared by several workers (default: SQLite in run dir)"),
    study_name: str = typer.Option("kdkit-tabular", "--study-name"),
    timeout: float = typer.Option(None, "--timeout", help="stop starting trials after this many seconds"),
    teacher_params: str = typer.Option(None, "--teacher-params", help="fixed teacher parameters (JSON)"),
    student_params: str = typer.Option(None, "--student-params", help="fixed student parameters (JSON)"),
    keep_columns: list[str] = KEEP,
    holdout: float = HOLDOUT,
    holdout_seed: int = HOLDOUT_SEED,
    run_dir: Path = RUN_DIR,
) -> None:
    """Optuna search over teacher and student parameters and alpha, scored by the student's CV score on the fitting
    rows; the best is then scored on the held-out rows."""
    from kdkit.families.tabular.holdout import check_fraction
    from kdkit.families.tabular.tune import run_study

    _check_names(teacher, student, student_mode)
    check_fraction(holdout)
    _check_n_jobs(n_jobs)
    fixed_teacher, fixed_student = _json(teacher_params, "--teacher-params"), _json(student_params, "--student-params")
    _check_files(train, test)
    if run_dir is not None and run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--run-dir {run_dir} is a file; give a directory (new or from an earlier run)")
    task = _load(train, test, target, id_columns, student_columns, teacher_columns, n_splits)
    _refuse_ids(task, train, keep_columns)
    held = _held_out(task, holdout, holdout_seed, n_splits, train, test)
    out = _run_dir(run_dir, "tune")
    base = dict(teacher=teacher, student=student, teacher_columns=task.teacher_columns,
                student_columns=task.student_columns, student_mode=student_mode, n_splits=n_splits,
                random_state=seed, n_jobs=n_jobs, teacher_params=fixed_teacher, student_params=fixed_student)
    console.print(f"held out for the final score: {held.source}; the search never sees them", highlight=False)
    study = run_study(held.X, held.y, base, n_trials=n_trials, metric=metric, run_dir=out, storage=storage,
                      study_name=study_name, timeout=timeout, progress=True)
    best = study.best_trial
    table = Table(title=f"best trial #{best.number}: {metric} = {best.value:.4f} (out of fold on the fitting rows)")
    table.add_column("parameter")
    table.add_column("value", justify="right")
    for key, value in best.params.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
    _held_out_score(best, base, held, metric, out / BEST, {"fraction": holdout, "seed": holdout_seed,
                                                                  "test_file": held.lines is None,
                                                                  "source": held.source})
    console.print(f"study '{study_name}' ({len(study.trials)} trials) in {storage or out / STUDY}; "
                  f"best parameters: {out / BEST}")


def _held_out_score(best: Any, base: dict, held: HeldOut, metric: str, best_yaml: Path, holdout: dict) -> None:
    """Fit the best trial again, score it and the student alone on the held-out rows, print both and the paired
    verdict, and add them (and which rows were held out) to best.yaml."""
    import yaml

    from kdkit.config.yaml import dump_yaml
    from kdkit.families.tabular.tune import score_on_held_out
    from kdkit.io.checkpoint import write_atomic

    console.print(f"scoring the best trial on the {len(held.y_held)} held-out rows (teacher, distilled student and "
                  "student alone fitted again on the fitting rows)", highlight=False)
    result = score_on_held_out(best, base, held, metric, seed=int(base.get("random_state") or 0))
    for role, label in (("student_kd", "distilled (best trial)"), ("student_alone", LABELS["student_alone"])):
        console.print(f"  {label}: {metric} {result[metric][role]:.4f}, accuracy {result['accuracy'][role]:.4f}",
                      highlight=False)
    console.print(f"held-out verdict: {result['verdict']}", highlight=False, soft_wrap=True)
    text = best_yaml.read_text(encoding="utf-8")
    saved = {**yaml.safe_load(text), "holdout": holdout, "held_out": result}
    write_atomic(best_yaml, text.splitlines()[0] + "\n" + dump_yaml(json.loads(json.dumps(saved, default=str))))
