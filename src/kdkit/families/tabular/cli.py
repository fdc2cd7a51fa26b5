"""``kdkit tabular fit``, ``predict`` and ``tune``: the privileged-column recipe as one command.

``fit`` and ``tune`` read a tabular config (kdkit.families.tabular.config; e.g. configs/tabular.yaml) and/or flags:
each flag sets one key of the config (:data:`FLAGS`), over the file's value when both are given, so that a flag and
the key are one setting, with one default and one check. Bad input exits with code 2 and one ``error: ...`` line on
stderr (the main CLI does the same for every KdkitError; catching it here keeps this app usable on its own).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from kdkit.errors import ConfigError, DataError, KdkitError, plain_warnings

if TYPE_CHECKING:  # the libraries themselves are imported inside the commands: `--help` stays fast
    import pandas as pd

    from kdkit.families.tabular.config import TabularConfig

app = typer.Typer(help="Tabular distillation: a teacher on every training column, a student on the columns "
                  "that exist at prediction time.", no_args_is_help=True, add_completion=False)
GUIDE = ("Each option sets the config key it names (their defaults: configs/tabular.yaml). "
         "Guide: docs/guides/tables.md (in the repository; `make docs` builds the site)")  # the last lines of --help
console = Console()

# each flag of `fit` and `tune` by its parameter: (the flag, the config key it sets); the config owns the setting
FLAGS: dict[str, tuple[str, str]] = {
    "train": ("--train", "data.train"), "test": ("--test", "data.test"), "target": ("--target", "data.target"),
    "id_columns": ("--id", "data.id_columns"), "keep_columns": ("--keep-column", "data.keep_columns"),
    "holdout": ("--holdout", "data.holdout.fraction"), "holdout_seed": ("--holdout-seed", "data.holdout.seed"),
    "teacher": ("--teacher", "teacher.name"), "teacher_params": ("--teacher-params", "teacher.params"),
    "teacher_columns": ("--teacher-columns", "teacher.columns"), "student": ("--student", "student.name"),
    "student_params": ("--student-params", "student.params"),
    "student_columns": ("--student-columns", "student.columns"), "student_mode": ("--student-mode", "student.mode"),
    "alpha": ("--alpha", "distill.alpha"), "n_splits": ("--n-splits", "distill.n_splits"),
    "threshold": ("--threshold", "distill.tune_threshold"), "seed": ("--seed", "seed"),
    "n_jobs": ("--n-jobs", "n_jobs"),
    "run_dir": ("--run-dir", "output_dir"), "n_trials": ("--n-trials", "tune.trials"),
    "metric": ("--metric", "tune.metric"), "study_name": ("--study-name", "tune.study"),
    "timeout": ("--timeout", "tune.timeout"),
}


def _option(name: str, help: str, *extra: str) -> Any:
    """The flag `name` of FLAGS, not given unless typed (the config's value, else its default, holds then)."""
    flag, key = FLAGS[name]
    return typer.Option(None, *(extra or (flag,)), help=f"{help} (config: {key})")


CONFIG = typer.Argument(None, help="tabular config (YAML, e.g. configs/tabular.yaml); the options replace its keys")
TRAIN = _option("train", "training CSV (all columns, with the target)")
TEST = _option("test", "test CSV: its columns (minus --id) become the student's columns")
TARGET = _option("target", "name of the target column in the train file")
IDS = _option("id_columns", "id column(s), excluded from features and copied to predictions")
STUDENT_COLS = _option("student_columns", "comma-separated; default: the test file's columns")
TEACHER_COLS = _option("teacher_columns", "comma-separated; default: every train column")
TEACHER = _option("teacher", "catboost, lightgbm, xgboost, mlp, logreg, ...")
STUDENT = _option("student", "catboost, lightgbm, xgboost, mlp, logreg, ...")
MODE = _option("student_mode", "auto, soft, regress, expand")
SPLITS = _option("n_splits", "folds for the teacher's out-of-fold probabilities and the student")
SEED = _option("seed", "seeds the folds and every fold model")
N_JOBS = _option("n_jobs", "threads of each CatBoost, LightGBM, XGBoost or forest model (-1: every core; default: "
                 "each library's own setting), as scikit-learn's n_jobs")
RUN_DIR = _option("run_dir", "output directory (default: runs/tabular-fit-<time>, or -tune-)")
KEEP = _option("keep_columns", "a column that looks like a row id (named like one, or whole numbers unique per row "
               "and in order) but is a real feature: use it as one")
HOLDOUT = _option("holdout", "share of the training rows held out for the verdict, stratified (unless --test holds "
                  "the target and every teacher column: then its rows are held out)")
HOLDOUT_SEED = _option("holdout_seed", "seed of the held-out split; fit and tune with the same one hold out the same "
                       "rows")
TEACHER_PARAMS = _option("teacher_params", "JSON object, e.g. '{\"depth\": 6}'")
STUDENT_PARAMS = _option("student_params", "JSON object, e.g. '{\"n_estimators\": 300}'")


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


def _split(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def _json(text: str, what: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{what} is not valid JSON ({err.msg}); example: '{{\"depth\": 6}}'") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must be a JSON object, e.g. '{{\"depth\": 6}}'")
    return value


def _flag_value(name: str, value: Any) -> Any:
    """A flag's value as the config writes it: columns comma-separated, parameters as JSON, paths as text."""
    if name in ("student_columns", "teacher_columns"):
        return _split(value)
    if name in ("teacher_params", "student_params"):
        return _json(value, FLAGS[name][0])
    return str(value) if isinstance(value, Path) else value


def _set(raw: dict[str, Any], path: str, value: Any) -> None:
    """raw[a][b] = value for the path "a.b", making a section the file leaves out."""
    *sections, key = path.split(".")
    for depth, section in enumerate(sections):
        if raw.get(section) is None:
            raw[section] = {}
        if not isinstance(raw[section], dict):
            raise ConfigError(f"config error at {'.'.join(sections[: depth + 1])}: a section (a mapping) is expected; "
                              "see configs/tabular.yaml")
        raw = raw[section]
    raw[key] = value


def settings(config: Path | None, flags: dict[str, Any], tuned: dict[str, Any] | None = None,
             tuned_from: Path | None = None) -> TabularConfig:
    """The config of `config` (or of the flags alone), each flag given setting its key, then `tuned` values (by
    path, from --from-tune); validated, a mistake one line naming the key, or the flag that set it."""
    from kdkit.config.yaml import read_config
    from kdkit.families.tabular.config import KIND, parse_tabular_config

    given = {name: value for name, value in flags.items() if value is not None and value != []}
    if config is None and not {"train", "target"} <= set(given):
        raise ConfigError("give a config (kdkit tabular fit CONFIG.yaml, e.g. configs/tabular.yaml) or --train and "
                          "--target")
    raw = read_config(config) if config is not None else {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config error: {config} holds no YAML mapping; see configs/tabular.yaml")
    raw.setdefault("kind", KIND)
    named = {}
    for name, value in given.items():
        flag, path = FLAGS[name]
        _set(raw, path, _flag_value(name, value))
        named[path] = flag
    for path, value in (tuned or {}).items():
        _set(raw, path, value)
        named[path] = f"--from-tune {tuned_from}"
    return parse_tabular_config(raw, named)


@app.command(epilog=GUIDE)
@_user_errors
def fit(
    config: Path = CONFIG,
    train: Path = TRAIN,
    test: Path = TEST,
    target: str = TARGET,
    id_columns: list[str] = IDS,
    student_columns: str = STUDENT_COLS,
    teacher_columns: str = TEACHER_COLS,
    teacher: str = TEACHER,
    student: str = STUDENT,
    student_mode: str = MODE,
    alpha: float = _option("alpha", "student target = (1-alpha)*teacher + alpha*label"),
    n_splits: int = SPLITS,
    seed: int = SEED,
    n_jobs: int = N_JOBS,
    threshold: bool = _option("threshold", "binary: tune the decision threshold for macro F1 on out-of-fold rows",
                              "--threshold/--no-threshold"),
    teacher_params: str = TEACHER_PARAMS,
    student_params: str = STUDENT_PARAMS,
    from_tune: Path = typer.Option(None, "--from-tune", help="best.yaml of 'kdkit tabular tune': its teacher/student "
                                   "parameters and alpha replace the config's and the options above"),
    keep_columns: list[str] = KEEP,
    holdout: float = HOLDOUT,
    holdout_seed: int = HOLDOUT_SEED,
    run_dir: Path = RUN_DIR,
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a run already in --run-dir"),
    quick_timing: bool = typer.Option(False, "--quick-timing", help="time latency and throughput with 3 and 2 calls "
                                      "instead of 20 and 5: noisier; results.json records it (cost.plan)"),
) -> None:
    """Teacher out-of-fold -> distilled student; compare with the student alone on held-out rows; predict the test
    file."""
    from kdkit.families.tabular.run import read_best, run_fit, tuned_holdout_beside

    flags = {name: value for name, value in locals().items() if name in FLAGS}
    tuned, holdout_tuned = read_best(from_tune) if from_tune is not None else (None, tuned_holdout_beside(config))
    cfg = settings(config, flags, tuned, from_tune)  # every name, number and path: nothing is read before
    run_fit(cfg, console, overwrite, holdout_tuned, from_tune or config, quick_cost=quick_timing)


@app.command(epilog=GUIDE)
@_user_errors
def predict(
    run: Path = typer.Argument(..., help="run directory of 'kdkit tabular fit' (or its models/ folder)"),
    input_csv: Path = typer.Option(..., "--input", help="CSV with the student's columns"),
    id_columns: list[str] = typer.Option([], "--id", help="id column(s), copied to the predictions"),
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
    from kdkit.run.rundir import INPUT_PREDICTIONS

    run_dir = run.parent if (run / MANIFEST).is_file() else run  # its models/ folder given directly
    preds = predict_rows(run_dir, input_csv, model, id_columns, trust)
    console.print(f"predicted {len(preds):,} rows of {input_csv} with the {model.replace('_', ' ')}'s fold models "
                  "(their mean)", highlight=False)
    target = output or (run_dir / INPUT_PREDICTIONS.format(input=input_csv.stem))
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
    from kdkit.families.tabular.run import check_files, prediction_frame

    id_columns = list(id_columns or [])
    check_files(input_csv)
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
    return prediction_frame(model, frame[model.student_columns_], ids)


@app.command(epilog=GUIDE)
@_user_errors
def tune(
    config: Path = CONFIG,
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
    n_trials: int = _option("n_trials", "trials run by this process"),
    metric: str = _option("metric", "macro_f1, roc_auc, accuracy or log_loss, out of fold"),
    storage: str = typer.Option(None, "--storage", help="database URL shared by several workers (default: SQLite "
                                "in RUN_DIR/tune)"),
    study_name: str = _option("study_name", "the study's name in its storage"),
    timeout: float = _option("timeout", "stop starting trials after this many seconds"),
    teacher_params: str = _option("teacher_params", "fixed teacher parameters (JSON)"),
    student_params: str = _option("student_params", "fixed student parameters (JSON)"),
    keep_columns: list[str] = KEEP,
    holdout: float = HOLDOUT,
    holdout_seed: int = HOLDOUT_SEED,
    run_dir: Path = RUN_DIR,
) -> None:
    """Optuna search over teacher and student parameters and alpha, scored by the student's CV score on the fitting
    rows, in kdkit tune's loop (RUN_DIR/tune/: study.db, trials.csv, best.yaml); the best is then scored on the
    held-out rows."""
    from kdkit.families.tabular.run import run_tune

    run_tune(settings(config, {name: value for name, value in locals().items() if name in FLAGS}), console, storage)
