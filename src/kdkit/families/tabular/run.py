"""A tabular run from its validated config (kdkit.families.tabular.config): :func:`run_fit` (`kdkit tabular fit`,
`kdkit train`) fits the teacher out of fold, the distilled student and the student alone on the fitting rows, scores
the three on the held-out rows and writes the run directory; :func:`run_tune` (`kdkit tabular tune`, `kdkit tune`)
runs the search in the one tune loop and scores its best config on the held-out rows.

Every name, number and path is checked (by the config, then here) before a file is read, and the run directory's
refusals before any model is fitted. The libraries are imported inside the functions: `--help` stays fast.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from kdkit.errors import ConfigError, DataError
from kdkit.families.tabular.evaluate import METRICS
from kdkit.run.rundir import BEST, CONFIG, LABELS, MODELS, PREDICTIONS, RESULTS, STUDY, TABLE, TUNE_HELD_OUT, RunDir

if TYPE_CHECKING:
    import pandas as pd

    from kdkit.families.tabular.config import TabularConfig
    from kdkit.families.tabular.estimator import DistilledClassifier
    from kdkit.families.tabular.holdout import HeldOut
    from kdkit.families.tabular.io import TabularTask


def check_files(*paths: Path | None) -> None:
    for path in paths:
        if path is not None and path.is_dir():
            raise DataError(f"{path} is a directory; give a CSV file")
        if path is not None and not path.is_file():
            raise DataError(f"{path}: file not found")


def _refuse_a_file(run_dir: Path | None) -> None:
    if run_dir is not None and run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--run-dir {run_dir} is a file; give a directory (new or from an earlier run)")


def _precheck_run_dir(run_dir: Path | None, overwrite: bool) -> None:
    """The run directory's refusals (a file, a finished, unfinished or locked run) before any data is read."""
    from kdkit.run import guard as run_guard

    _refuse_a_file(run_dir)
    if run_dir is not None:  # None: a new directory named by the time
        run_guard.precheck(run_dir, overwrite=overwrite, resumable=False)


def _run_dir(run_dir: Path | None, kind: str) -> Path:
    """`run_dir`, or runs/tabular-<kind>-<time> when the config names none."""
    path = run_dir or Path("runs") / f"tabular-{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    _refuse_a_file(path)
    return path


def load_task(cfg: TabularConfig, console: Console) -> tuple[TabularTask, HeldOut]:
    """The config's files read, likely id columns refused, and the verdict's held-out rows chosen (the same rows for
    `fit` and `tune` with the same files, share and seed), before anything is fitted or written."""
    from kdkit.families.tabular.holdout import choose_held_out
    from kdkit.families.tabular.io import load_task as read_task

    data = cfg.data
    task = read_task(data.train, data.target, data.test, data.id_columns, cfg.student.columns, cfg.teacher.columns,
                     n_splits=cfg.distill.n_splits)
    _refuse_ids(task, data.train, data.keep_columns)
    test = None if data.test is None else str(data.test)
    held = choose_held_out(task, data.holdout.fraction, data.holdout.seed, cfg.distill.n_splits, str(data.train), test)
    if task.test_y is not None and held.lines is not None:
        missing = [c for c in task.X.columns if task.test is not None and c not in task.test.columns]
        console.print(f"{data.test} holds the target but not every teacher column ({', '.join(map(str, missing[:3]))}"
                      f"...): the verdict is measured on {held.source} instead", highlight=False, soft_wrap=True)
    return task, held


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


# ------------------------------------------------------------------------------------------------------------ fit
def run_fit(cfg: TabularConfig, console: Console, overwrite: bool = False, tuned: dict[str, Any] | None = None,
            tuned_from: Path | None = None, quick_cost: bool = False) -> Path:
    """Teacher out of fold -> distilled student, and the student alone, compared on held-out rows; the test file
    predicted; the run directory written. `tuned`: the held-out rows a search behind the config held out (fitting
    rows it chose on may not be held out here); `quick_cost`: the quick timing plan. Returns the run directory."""
    from kdkit.families.tabular.rundir import write_run
    from kdkit.families.tabular.tune import distiller

    check_files(cfg.data.train, cfg.data.test)
    _precheck_run_dir(cfg.output_dir, overwrite)
    task, held = load_task(cfg, console)
    if tuned is not None:
        _check_tuned_on_same_rows(tuned, held, cfg, tuned_from)
    out, lock = _claimed_run_dir(cfg.output_dir, overwrite)
    # verbose: a plain line per fold model
    distilled = distiller(cfg, task.teacher_columns, task.student_columns, tune_threshold=cfg.distill.tune_threshold,
                          verbose=1)
    alone = _fit_both(distilled, cfg, task, held, out, console)
    held_scores, oof_scores = _scores(distilled, alone, held, _row_names(cfg, task), cfg.distill.tune_threshold)
    _save_models(out, distilled, alone, task, console)
    with console.status("measuring size and latency of the three models..."):
        table = write_run(out, _run_config(cfg, task, held, distilled, out), distilled, alone, held, held_scores,
                          oof_scores, Path(cfg.data.train).stem, quick_cost)
    binary = cfg.distill.tune_threshold and len(distilled.classes_) == 2
    _print_run(out, Path(cfg.data.train).stem, table, held, held_scores, oof_scores, console,
               " (threshold tuned for macro F1 out of fold)" if binary else "")
    lock.release()
    return out


def _claimed_run_dir(run_dir: Path | None, overwrite: bool) -> tuple[Path, Any]:
    """The fit's run directory, locked and guarded like a torch run's (kdkit.run.guard): a directory in use by
    another run, or holding a finished or interrupted run, is refused with one line unless --overwrite."""
    from kdkit.run import guard as run_guard

    out = _run_dir(run_dir, "fit")
    out.mkdir(parents=True, exist_ok=True)
    return out, run_guard.claim(out, overwrite=overwrite, resumable=False)


def _row_names(cfg: TabularConfig, task: TabularTask) -> dict[str, str]:
    return {"teacher": f"teacher {cfg.teacher.name} ({len(task.teacher_columns)} cols)",
            "student_alone": f"student alone {cfg.student.name} ({len(task.student_columns)} cols)",
            "student_kd": f"distilled {cfg.student.name} (alpha={cfg.distill.alpha:g})"}


def _run_config(cfg: TabularConfig, task: TabularTask, held: HeldOut, distilled: DistilledClassifier,
                out: Path) -> dict[str, Any]:
    """The run-directory contract's config.yaml (compare pools runs that differ only by seed): the config with the
    columns the data gave and the teacher's parameters as fitted."""
    data = cfg.data
    return {
        "kind": "tabular",
        "data": {"name": Path(data.train).stem, "train": str(data.train),
                 "test": None if data.test is None else str(data.test), "target": data.target,
                 "id_columns": list(data.id_columns), "keep_columns": list(data.keep_columns),
                 "holdout": {"fraction": data.holdout.fraction, "seed": data.holdout.seed,
                             "test_file": held.lines is None}},
        "teacher": {"name": cfg.teacher.name, "params": distilled.teacher_params,
                    "columns": list(task.teacher_columns)},
        "student": {"name": cfg.student.name, "params": dict(cfg.student.params),
                    "columns": list(task.student_columns), "mode": cfg.student.mode},
        "distill": {"alpha": cfg.distill.alpha, "n_splits": cfg.distill.n_splits,
                    "tune_threshold": cfg.distill.tune_threshold},
        "seed": cfg.seed,
        "output_dir": str(out),
    }


def _fit_both(distilled: DistilledClassifier, cfg: TabularConfig, task: TabularTask, held: HeldOut, out: Path,
              console: Console) -> DistilledClassifier:
    """The distilled student (the teacher's out-of-fold models first) and the student alone, on the fitting rows,
    each announced; returns the student alone."""
    from kdkit.families.tabular.tune import student_alone

    n_splits = cfg.distill.n_splits
    console.print(f"{len(held.y)} rows to fit on; teacher sees {len(task.teacher_columns)} columns, "
                  f"student {len(task.student_columns)}; run directory {out}", highlight=False)
    console.print(f"held out for the verdict: {held.source}; no model sees them while it is fitted",
                  highlight=False)
    console.print(f"distilled student: the teacher's {n_splits} out-of-fold models, then {n_splits} student folds",
                  highlight=False)
    distilled.fit(held.X, held.y)
    console.print(f"student alone: {n_splits} folds on hard labels", highlight=False)
    alone = student_alone(cfg, task.student_columns, tune_threshold=cfg.distill.tune_threshold, verbose=1)
    return alone.fit(held.X, held.y)


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


def prediction_frame(model: DistilledClassifier, rows: pd.DataFrame, ids: pd.DataFrame) -> pd.DataFrame:
    """id column(s), then P(classes[1]) (binary) or one prob_<class> per class, then the label."""
    from kdkit.families.tabular.evaluate import labels_from

    proba = model.predict_proba(rows)
    out = ids.reset_index(drop=True).copy()
    classes = list(model.classes_)
    if len(classes) == 2:
        out["probability"] = proba[:, 1]
    else:
        for k, c in enumerate(classes):
            out[f"prob_{c}"] = proba[:, k]
    out["label"] = model.classes_[labels_from(proba, model.threshold_)]  # model.predict, from the same proba
    return out


def _save_models(out: Path, distilled: DistilledClassifier, alone: DistilledClassifier, task: TabularTask,
                 console: Console) -> None:
    """Both fitted students (every row of the table can be loaded again) and the test file's predictions."""
    from kdkit.families.tabular.load import ALONE
    from kdkit.families.tabular.save import save_distiller

    save_distiller(distilled, RunDir(out).models)
    save_distiller(alone, RunDir(out).models / ALONE)
    if task.test is not None:
        prediction_frame(distilled, task.test, task.test_ids).to_csv(RunDir(out).test_predictions, index=False)
        console.print(f"predictions for {len(task.test)} test rows: {RunDir(out).test_predictions}")


def _print_table(title: str, rows: dict[str, dict[str, float]], console: Console) -> None:
    from kdkit.report.table import print_unwrapped

    table = Table(title=title)
    table.add_column("model")
    for m in METRICS:
        table.add_column(m, justify="right")
    for name, vals in rows.items():
        table.add_row(name, *(f"{vals[m]:.4f}" for m in METRICS))
    print_unwrapped(table, console)


def _print_run(out: Path, name: str, table: Any, held: HeldOut, held_scores: dict[str, Any],
               oof_scores: dict[str, Any], console: Console, cut: str) -> None:
    """The three-row table, the held-out and out-of-fold scores, the verdict and where the run is."""
    from kdkit.report.runinfo import show_verdict
    from kdkit.report.table import print_table

    print_table(table, title=f"kdkit tabular: {name} (the {len(held.y_held)} held-out rows)", console=console)
    _print_table(f"held-out rows{cut}", {values["name"]: values for values in held_scores.values()}, console)
    _print_table(f"out of fold on the {len(held.y)} fitting rows: optimistic for the distilled student, not the "
                 "verdict", {values["name"]: values for values in oof_scores.values()}, console)
    show_verdict(out, console)
    console.print(f"run directory: {out} ({CONFIG}, {RESULTS}, {PREDICTIONS}, {TABLE}, {MODELS}/); "
                  f"next: kdkit report {out}", highlight=False, soft_wrap=True)


# ------------------------------------------------------------------------------------------ a search's best config
def read_best(path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The tuned values of `path`, a best.yaml of `kdkit tabular tune` (the config with the best values; or the
    summary it wrote before it wrote the config, also as JSON), as {teacher.params, student.params, distill.alpha}
    by config path, and the held-out rows its search held out (None when it does not say)."""
    import yaml

    from kdkit.families.tabular.config import KIND, parse_tabular_config

    check_files(path)
    try:
        best = yaml.safe_load(Path(path).read_text(encoding="utf-8"))  # JSON is YAML too
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        raise ConfigError(f"{path}: cannot read; give the {BEST} written by 'kdkit tabular tune'") from None
    if isinstance(best, dict) and best.get("kind") == KIND:
        cfg = parse_tabular_config(best)
        return {"teacher.params": cfg.teacher.params, "student.params": cfg.student.params,
                "distill.alpha": cfg.distill.alpha}, tuned_holdout_beside(path)
    if not isinstance(best, dict) or not {"teacher_params", "student_params", "alpha"} <= set(best):
        raise ConfigError(f"{path}: not a {BEST} from 'kdkit tabular tune'")
    return {"teacher.params": best["teacher_params"], "student.params": best["student_params"],
            "distill.alpha": float(best["alpha"])}, best.get("holdout")


def tuned_holdout_beside(path: Path | None) -> dict[str, Any] | None:
    """The held-out rows a search held out, when `path` is the best config it wrote (its held-out score file lies
    beside it); None otherwise. A fit of that config, flags or --set included, must hold out the same rows."""
    import yaml

    held_out = Path(path).parent / TUNE_HELD_OUT if path is not None else None
    if held_out is None or Path(path).name != BEST or not held_out.is_file():
        return None
    return (yaml.safe_load(held_out.read_text(encoding="utf-8")) or {}).get("holdout")


def _check_tuned_on_same_rows(tuned: dict[str, Any], held: HeldOut, cfg: TabularConfig, path: Path | None) -> None:
    """Parameters tuned with other held-out rows were chosen on rows this fit holds out: refused."""
    from kdkit.families.tabular.tune import held_out_rows, holdout_of

    if held_out_rows(tuned) != held_out_rows(holdout_of(cfg, held)):
        raise ConfigError(f"{path} was tuned holding out {tuned.get('source')}; this fit would hold out "
                          f"{held.source}, rows the search chose on. Give the same --holdout "
                          f"{tuned.get('fraction')} and --holdout-seed {tuned.get('seed')} (and --test file)")


# ----------------------------------------------------------------------------------------------------------- tune
def run_tune(cfg: TabularConfig, console: Console, storage: str | None = None) -> dict[str, Any]:
    """The search (kdkit.families.tabular.tune.TabularSearch) in the one tune loop, writing OUTPUT_DIR/tune/; then
    its best config fitted again and scored, with the student alone, on the held-out rows. Returns the best values
    by path."""
    from kdkit.families.tabular.tune import TabularSearch, trial_config
    from kdkit.tune.loop import run_search

    check_files(cfg.data.train, cfg.data.test)
    cfg = cfg.model_copy(update={"output_dir": _run_dir(cfg.output_dir, "tune")})
    search = TabularSearch(cfg, load_task)
    values = run_search(search, None, console, storage)
    out = RunDir(cfg.output_dir).tune
    _held_out_score(trial_config(search.raw, values), search.task, search.held, out, console)
    console.print(f"study '{cfg.tune.study}' in {storage or out / STUDY}; best config: {out / BEST} (run it with: "
                  f"kdkit tabular fit {out / BEST})", highlight=False, soft_wrap=True)
    return values


def _held_out_score(best: TabularConfig, task: TabularTask, held: HeldOut, out: Path, console: Console) -> None:
    """Fit the best config again, score it and the student alone on the held-out rows, print both and the paired
    verdict, and write them (and which rows were held out) to held_out.yaml beside best.yaml."""
    from kdkit.families.tabular.tune import holdout_of, score_on_held_out, write_held_out

    console.print(f"scoring the best trial on the {len(held.y_held)} held-out rows (teacher, distilled student and "
                  "student alone fitted again on the fitting rows)", highlight=False)
    result = score_on_held_out(best, task, held)
    metric = best.tune.metric
    for role, label in (("student_kd", "distilled (best trial)"), ("student_alone", LABELS["student_alone"])):
        console.print(f"  {label}: {metric} {result[metric][role]:.4f}, accuracy {result['accuracy'][role]:.4f}",
                      highlight=False)
    console.print(f"held-out verdict: {result['verdict']}", highlight=False, soft_wrap=True)
    write_held_out(out, holdout_of(best, held), result)
