"""Optuna search over teacher parameters, student parameters and alpha, scored by the distilled student's
cross-validated (out-of-fold) score against the true labels on the fitting rows; the best trial is then fitted
again and scored on held-out rows the search never saw (`score_on_held_out`, kdkit.families.tabular.holdout).

The study lives in ``sqlite:///<run_dir>/study.db`` unless ``storage`` names another database: several
machines that run the same command with the same ``storage`` URL and ``study_name`` share one study (give
each worker its own ``seed`` so their first random trials differ; PostgreSQL needs its driver, e.g.
psycopg2, installed). After each student fold the score on the rows predicted so far is reported, and the
median pruner stops trials that are worse than the median of earlier trials at the same fold.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from kdkit.errors import ConfigError
from kdkit.families.tabular.estimator import DistilledClassifier
from kdkit.families.tabular.evaluate import LOWER_IS_BETTER, METRICS, best_threshold, scores
from kdkit.families.tabular.holdout import HeldOut
from kdkit.families.tabular.models import resolve
from kdkit.run.rundir import BEST, STUDY
from kdkit.trainer.progress import clock
from kdkit.tune.study import complete_trials, open_storage


class _Prefixed:
    """Give a family's search space its own namespace (``teacher.depth`` vs ``student.depth``)."""

    def __init__(self, trial: optuna.Trial, prefix: str) -> None:
        self.trial, self.prefix = trial, prefix

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.trial, name)
        if not name.startswith("suggest_"):
            return method
        return lambda param, *a, **kw: method(f"{self.prefix}{param}", *a, **kw)


def _metric(metric: str, codes: np.ndarray, proba: np.ndarray) -> float:
    cut = best_threshold(codes, proba[:, 1]) if metric == "macro_f1" and proba.shape[1] == 2 else None
    return scores(codes, proba, cut)[metric]


def make_objective(X: pd.DataFrame, y: Any, base: dict, metric: str, tune_alpha: bool = True) -> Any:
    """Objective for ``study.optimize``: builds a DistilledClassifier from ``base`` plus the trial's picks."""
    teacher_space = resolve(base.get("teacher", "catboost"), "teacher").space
    student_space = resolve(base.get("student", "lightgbm"), "student").space

    def objective(trial: optuna.Trial) -> float:
        teacher_params = {**(base.get("teacher_params") or {}),
                          **(teacher_space(_Prefixed(trial, "teacher.")) if teacher_space else {})}
        student_params = {**(base.get("student_params") or {}),
                          **(student_space(_Prefixed(trial, "student.")) if student_space else {})}
        alpha = trial.suggest_float("alpha", 0.0, 0.9) if tune_alpha else float(base.get("alpha", 0.0))
        model = DistilledClassifier(**{**base, "teacher_params": teacher_params, "student_params": student_params,
                                       "alpha": alpha})
        codes = np.searchsorted(np.unique(np.asarray(y)), np.asarray(y))

        def on_fold(fold: int, done: np.ndarray, oof: np.ndarray) -> None:
            try:
                value = _metric(metric, codes[done], oof[done])
            except ValueError:  # e.g. one class among the rows predicted so far
                return
            trial.report(value, fold)
            if trial.should_prune():
                raise optuna.TrialPruned()

        model.fit(X, y, on_fold=on_fold)
        trial.set_user_attr("teacher_params", teacher_params)
        trial.set_user_attr("student_params", student_params)
        trial.set_user_attr("alpha", alpha)
        return _metric(metric, codes, model.student_oof_)

    return objective


def run_study(
    X: pd.DataFrame,
    y: Any,
    base: dict,
    *,
    n_trials: int = 30,
    metric: str = "log_loss",
    run_dir: Path | str = "runs/tabular-tune",
    storage: str | None = None,
    study_name: str = "kdkit-tabular",
    timeout: float | None = None,
    tune_alpha: bool = True,
    progress: bool = False,
) -> optuna.Study:
    """Create or join the study, run ``n_trials`` here, write ``best.yaml`` to ``run_dir`` (as `kdkit tune` does;
    `kdkit tabular fit --from-tune` reads it); returns the study."""
    if metric not in METRICS:
        raise ConfigError(f"unknown metric '{metric}'; choose one of: {', '.join(METRICS)}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(run_dir / STUDY).resolve()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seed = int(base.get("random_state", base.get("seed")) or 0)
    study = open_storage(  # the study of kdkit tune's loop, with this search's own sampler seed and pruner
        optuna, storage, study_name=study_name, direction="minimize" if metric in LOWER_IS_BETTER else "maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
    )
    objective = make_objective(X, y, base, metric, tune_alpha)
    if progress:
        _optimize_with_bar(study, objective, n_trials, timeout)
    else:
        study.optimize(objective, n_trials=n_trials, timeout=timeout)
    if not complete_trials(study):
        raise ConfigError("no trial completed; raise --n-trials or check the parameters")
    best = study.best_trial
    summary = {"metric": metric, "value": best.value, "trial": best.number, "params": best.params,
               **{k: best.user_attrs.get(k) for k in ("teacher_params", "student_params", "alpha")}}
    from kdkit.config.yaml import dump_yaml
    from kdkit.io.checkpoint import write_atomic

    write_atomic(run_dir / BEST, "# written by kdkit tabular tune: the best trial; reuse it with "
                 f"kdkit tabular fit --from-tune {BEST}\n" + dump_yaml(json.loads(json.dumps(summary, default=list))))
    return study


def score_on_held_out(best: optuna.trial.FrozenTrial, base: dict, held: HeldOut, metric: str,
                      seed: int = 0) -> dict[str, Any]:
    """The best trial's teacher, student and alpha fitted again on the fitting rows, with the student alone (same
    student parameters, hard labels), and both scored on the held-out rows that the search never saw; the paired
    verdict on accuracy says whether the tuned distillation beats the student alone there."""
    from kdkit.verdict import Verdict, correct_per_unit, kind_of, paired_bootstrap

    student_params = best.user_attrs["student_params"]
    distilled = DistilledClassifier(**{**base, "teacher_params": best.user_attrs["teacher_params"],
                                       "student_params": student_params, "alpha": best.user_attrs["alpha"]})
    distilled.fit(held.X, held.y)
    alone = DistilledClassifier(**{**base, "student_params": student_params, "student_mode": "auto", "alpha": 1.0})
    alone.fit(held.X, held.y)
    fit_codes = np.searchsorted(distilled.classes_, np.asarray(held.y))
    codes = np.searchsorted(distilled.classes_, np.asarray(held.y_held))
    proba = {"student_kd": (distilled.student_oof_, distilled.predict_proba(held.X_held)),
             "student_alone": (alone.student_oof_, alone.predict_proba(held.X_held))}
    values, correct = {}, {}
    for role, (oof, on_held) in proba.items():
        cut = best_threshold(fit_codes, oof[:, 1]) if metric == "macro_f1" and oof.shape[1] == 2 else None
        values[role] = scores(codes, on_held, cut)
        correct[role], total = correct_per_unit(np.log(np.clip(on_held, 1e-12, 1.0)), codes)
    diff, low, high = paired_bootstrap(correct["student_kd"], correct["student_alone"], total, seed=seed)
    verdict = Verdict(kind_of(low, high), diff, low, high, f"paired bootstrap over {len(codes):,} held-out rows, "
                      f"seed {seed}", len(codes))
    return {"rows": len(codes), "source": held.source, metric: {r: v[metric] for r, v in values.items()},
            "accuracy": {r: v["accuracy"] for r, v in values.items()}, "verdict": verdict.headline}


def _optimize_with_bar(study: optuna.Study, objective: Any, n_trials: int, timeout: float | None) -> None:
    """One plain line per finished trial (its state and value, the best so far, elapsed time and an ETA): unlike a
    redrawn bar, log files and CI keep it."""
    start, seen = time.monotonic(), len(study.trials)  # a shared study may hold other workers' trials already

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        done = len(study.trials) - seen
        elapsed = time.monotonic() - start
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        best = f"best so far {study.best_value:.4f} (trial {study.best_trial.number})" if complete else "no best yet"
        # Optuna gives a pruned trial its last reported value: only a complete trial's value is its score
        value = f"{trial.value:.4f}" if trial.state == optuna.trial.TrialState.COMPLETE else trial.state.name.lower()
        print(f"trial {trial.number} ({done}/{n_trials}): {value}; {best}; elapsed {clock(elapsed)}, ETA "
              f"{clock(elapsed / done * max(0, n_trials - done))}", flush=True)

    study.optimize(objective, n_trials=n_trials, timeout=timeout, callbacks=[report])
