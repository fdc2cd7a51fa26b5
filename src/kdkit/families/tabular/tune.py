"""`kdkit tabular tune`: the tabular family's side of the one tune loop (kdkit.tune.loop). Each trial fits the teacher
and the distilled student with the trial's values at their config paths (by default each model's own space,
kdkit.families.tabular.models, at ``teacher.params.*`` / ``student.params.*``, and ``distill.alpha``) and is scored
by the distilled student's cross-validated (out-of-fold) score against the true labels on the fitting rows; the best
trial is then fitted again and scored, with the student alone, on held-out rows the search never saw
(:func:`score_on_held_out`, kdkit.families.tabular.holdout).

The loop writes what `kdkit tune` writes into ``<output_dir>/tune/``: ``study.db`` (or the ``--storage`` database,
which several machines running the same command share under one ``tune.study`` name; PostgreSQL needs its driver,
e.g. psycopg2), ``trials.csv`` and ``best.yaml``, the config with the best values, which ``kdkit tabular fit
best.yaml`` runs; ``held_out.yaml`` beside it names the held-out rows before the first trial, and gets the best
config's score on them at the end (the study keeps the rows too: a rerun holding out others is refused). After each
student fold the score on the rows predicted so far is reported, and the median pruner stops trials worse than the
median of earlier trials at the same fold.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from kdkit.families.tabular.config import TabularConfig, parse_tabular_config
from kdkit.families.tabular.estimator import DistilledClassifier
from kdkit.families.tabular.evaluate import best_threshold, scores
from kdkit.families.tabular.holdout import HeldOut
from kdkit.families.tabular.models import resolve
from kdkit.tune.config import SearchRange
from kdkit.tune.space import range_end, set_path

ALPHA_RANGE = {"low": 0.0, "high": 0.9}  # the label's share in the student's target, searched by default


def default_space(cfg: TabularConfig) -> dict[str, SearchRange]:
    """Each model's own search space (its library's usual parameters) at its params path, and distill.alpha."""
    space: dict[str, SearchRange] = {}
    for role, model in (("teacher", cfg.teacher), ("student", cfg.student)):
        for name, found in (resolve(model.name, role).space or {}).items():
            space[f"{role}.params.{name}"] = SearchRange(**found)
    space["distill.alpha"] = SearchRange(**ALPHA_RANGE)
    return space


def search_space(cfg: TabularConfig) -> dict[str, SearchRange]:
    return dict(cfg.tune.space) if cfg.tune.space is not None else default_space(cfg)


def trial_config(raw: dict[str, Any], values: dict[str, Any]) -> TabularConfig:
    """The config with a trial's values at their paths, validated like any config."""
    changed = copy.deepcopy(raw)
    for path, value in values.items():
        set_path(changed, path, value)
    return parse_tabular_config(changed)


def _student_side(cfg: TabularConfig, student_columns: list[str], changes: dict[str, Any]) -> dict[str, Any]:
    return {**dict(student=cfg.student.name, student_columns=student_columns, student_params=dict(cfg.student.params),
                   student_mode=cfg.student.mode, n_splits=cfg.distill.n_splits, random_state=cfg.seed,
                   n_jobs=cfg.n_jobs), **changes}


def distiller(cfg: TabularConfig, teacher_columns: list[str], student_columns: list[str], **changes: Any
              ) -> DistilledClassifier:
    """The distilled student a config describes, on the columns the data gave (`changes`: other estimator
    settings, e.g. verbose)."""
    return DistilledClassifier(teacher=cfg.teacher.name, teacher_columns=teacher_columns,
                               teacher_params=dict(cfg.teacher.params), alpha=cfg.distill.alpha,
                               **_student_side(cfg, student_columns, changes))


def student_alone(cfg: TabularConfig, student_columns: list[str], **changes: Any) -> DistilledClassifier:
    """The same student, folds and seed on hard labels (alpha 1: no teacher is fitted), in mode auto."""
    return DistilledClassifier(alpha=1.0, **_student_side(cfg, student_columns, {**changes, "student_mode": "auto"}))


def _metric(metric: str, codes: np.ndarray, proba: np.ndarray) -> float:
    cut = best_threshold(codes, proba[:, 1]) if metric == "macro_f1" and proba.shape[1] == 2 else None
    return scores(codes, proba, cut)[metric]


class TabularSearch:
    """The tabular family's Search (kdkit.tune.loop): the data read and the rows held out once; every trial a
    teacher and a distilled student fitted on the fitting rows, scored out of fold."""

    def __init__(self, cfg: TabularConfig, load: Any) -> None:
        """`load(cfg, console)`: the task and its held-out rows (the same choice as `kdkit tabular fit`)."""
        self.cfg, self.load = cfg, load

    def prepare(self, console: Console) -> None:
        self.space = search_space(self.cfg)
        self.raw = self.cfg.model_dump(mode="json")
        for end in (0, -1):  # a wrong path or an invalid end fails before any data is read
            trial_config(self.raw, {p: range_end(s, end) for p, s in self.space.items()})
        self.task, self.held = self.load(self.cfg, console)
        self.held_out = held_out_rows(holdout_of(self.cfg, self.held))  # the study's: a rerun on others is refused
        self.codes = np.searchsorted(np.unique(np.asarray(self.held.y)), np.asarray(self.held.y))

    def train_teacher(self, out: Path, console: Console) -> None:
        console.print(f"held out for the final score: {self.held.source}; the search never sees them",
                      highlight=False)  # the teacher is fitted in every trial: its parameters are searched too
        # which rows are held out, written before any trial: a best.yaml whose scoring never ran still says so
        write_held_out(out, holdout_of(self.cfg, self.held), None)

    def score(self, trial: Any, values: dict[str, Any]) -> float:
        cfg = trial_config(self.raw, values)
        model = distiller(cfg, self.task.teacher_columns, self.task.student_columns)
        prune, metric = self.cfg.tune.prune, self.cfg.tune.metric

        def on_fold(fold: int, done: np.ndarray, oof: np.ndarray) -> None:
            try:
                value = _metric(metric, self.codes[done], oof[done])
            except ValueError:  # e.g. one class among the rows predicted so far
                return
            trial.report(value, fold)
            if prune and fold >= 1 and trial.should_prune():  # never on the first fold alone
                import optuna

                raise optuna.TrialPruned()

        model.fit(self.held.X, self.held.y, on_fold=on_fold)
        return _metric(metric, self.codes, model.student_oof_)

    def alone(self, optuna: Any, out: Path, storage: str | None, total: int, console: Console) -> None:
        return None  # the student alone is scored with the best trial's student parameters (score_on_held_out)


def score_on_held_out(cfg: TabularConfig, task: Any, held: HeldOut) -> dict[str, Any]:
    """The best config's teacher, student and alpha fitted again on the fitting rows, with the student alone (same
    student parameters, hard labels), and both scored on the held-out rows that the search never saw; the paired
    verdict on accuracy says whether the tuned distillation beats the student alone there."""
    from kdkit.verdict import Verdict, correct_per_unit, kind_of, paired_bootstrap

    metric, seed = cfg.tune.metric, cfg.seed
    distilled = distiller(cfg, task.teacher_columns, task.student_columns).fit(held.X, held.y)
    alone = student_alone(cfg, task.student_columns).fit(held.X, held.y)
    fit_codes = np.searchsorted(distilled.classes_, np.asarray(held.y))
    codes = np.searchsorted(distilled.classes_, np.asarray(held.y_held))
    proba = {"student_kd": (distilled.student_oof_, distilled.predict_proba(held.X_held)),
             "student_alone": (alone.student_oof_, alone.predict_proba(held.X_held))}
    values, correct = {}, {}
    for role, (oof, on_held) in proba.items():
        # the threshold rule of `kdkit tabular fit`, so the held-out scores here are those a fit of best.yaml reports
        cut = best_threshold(fit_codes, oof[:, 1]) if cfg.distill.tune_threshold and oof.shape[1] == 2 else None
        values[role] = scores(codes, on_held, cut)
        correct[role], total = correct_per_unit(np.log(np.clip(on_held, 1e-12, 1.0)), codes)
    diff, low, high = paired_bootstrap(correct["student_kd"], correct["student_alone"], total, seed=seed)
    verdict = Verdict(kind_of(low, high), diff, low, high, f"paired bootstrap over {len(codes):,} held-out rows, "
                      f"seed {seed}", len(codes))
    return {"rows": len(codes), "source": held.source, metric: {r: v[metric] for r, v in values.items()},
            "accuracy": {r: v["accuracy"] for r, v in values.items()}, "verdict": verdict.headline}


def holdout_of(cfg: TabularConfig, held: HeldOut) -> dict[str, Any]:
    """Which rows a search holds out, as held_out.yaml records them."""
    return {"fraction": cfg.data.holdout.fraction, "seed": cfg.data.holdout.seed, "test_file": held.lines is None,
            "source": held.source}


def held_out_rows(holdout: dict[str, Any]) -> dict[str, Any]:
    """What identifies the held-out rows (of holdout_of's record): a labelled test file, or the share and seed of the
    split; not the path as the user spelled it."""
    return {"test_file": True} if holdout.get("test_file") else \
        {"test_file": False, "fraction": holdout.get("fraction"), "seed": holdout.get("seed")}


def write_held_out(out: Path, holdout: dict[str, Any], result: dict[str, Any] | None) -> None:
    """held_out.yaml in the search's folder: the rows held out, and (once scored) the best config's scores there."""
    import json

    from kdkit.config.yaml import dump_yaml
    from kdkit.io.checkpoint import write_atomic
    from kdkit.run.rundir import BEST, TUNE_HELD_OUT

    saved = {"holdout": holdout, **({"held_out": result} if result is not None else {})}
    scored = f", and {BEST} scored on them" if result is not None else f" ({BEST} not scored on them yet)"
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / TUNE_HELD_OUT, f"# written by kdkit tabular tune: the rows it holds out{scored}\n"
                 + dump_yaml(json.loads(json.dumps(saved, default=str))))
