"""The student alone's side of `kdkit tune`: the same number of trials over its own train settings, so that a tuned
distilled student is never compared with a baseline weaker than the best student alone the search found.

    search      tune.alone_space: student.train.* paths only (the same student, trained differently); by default
                its learning rate, from a tenth to 10x the configured one, and, when the student trains with
                train.augment, that augmentation on or off. tune.trials trials in an Optuna study of its own
                ('kdkit-alone', in the same storage), scored on the validation split like the distilled trials.
    best.yaml   each row with its own best settings: student.train holds the alone row's (which the distilled row
                no longer inherits), distill.train the distilled row's: its own best values, and for every key the
                alone search set, the value the distilled trials trained with.

Off with ``tune.alone: false``.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from kdkit.errors import ConfigError
from kdkit.families.classification.config import RunConfig, SearchRange
from kdkit.measure import metrics

ALONE_STUDY = "kdkit-alone"
STUDENT_TRAIN = "student.train."


@dataclass
class AloneBest:
    """The best student-alone trial: its validation score, number and values by path."""

    value: float
    trial: int
    params: dict[str, Any]
    trials: int


def default_alone_space(cfg: RunConfig) -> dict[str, SearchRange]:
    """The student's learning rate (log scale, a tenth to 10x), and its augmentation on or off when it has one."""
    s = cfg.settings("student")
    space = {f"{STUDENT_TRAIN}lr": SearchRange(low=s.lr / 10, high=s.lr * 10, log=True)}
    if s.augment:
        space[f"{STUDENT_TRAIN}augment"] = SearchRange(choices=[[dict(op) for op in s.augment], []])
    return space


def alone_space(cfg: RunConfig) -> dict[str, SearchRange]:
    return cfg.tune.alone_space if cfg.tune.alone_space is not None else default_alone_space(cfg)


def alone_raw(raw: dict[str, Any], cfg: RunConfig) -> dict[str, Any]:
    """The config the alone trials vary: the distilled row keeps what it trains with (distill.train pins each key the
    alone search sets), so an alone value never reaches it, nor makes its settings invalid (e.g. cached_views
    without augmentation)."""
    out = copy.deepcopy(raw)
    trained = cfg.settings("distill").model_dump(mode="json")
    for path in alone_space(cfg):
        out["distill"]["train"].setdefault(path.removeprefix(STUDENT_TRAIN), trained[path.removeprefix(STUDENT_TRAIN)])
    return out


def search_alone(optuna: Any, cfg: RunConfig, raw: dict[str, Any], bundle: Any, val_loader: Any, teacher_val: Any,
                 out: Path, storage: str | None, total: int, console: Console) -> AloneBest:
    """Run the student alone's `total` trials (a rerun continues its study) and return the best one."""
    from kdkit.data import make_loader
    from kdkit.families.classification.pipeline import build_student
    from kdkit.families.classification.tune import (
        _study,
        _suggest,
        complete_trials,
        decode_params,
        trial_config,
        trial_reporter,
        write_trials,
    )
    from kdkit.schemes import Supervised
    from kdkit.trainer.loop import fit, predict

    space = alone_space(cfg)
    study = _study(optuna, out, cfg, space, storage, name=ALONE_STUDY)
    raw = alone_raw(raw, cfg)

    def objective(trial: Any) -> float:
        trial_cfg = trial_config(raw, {path: _suggest(trial, path, s) for path, s in space.items()})
        student = build_student(trial_cfg, bundle)  # the same initial weights as every distilled trial's student
        s = trial_cfg.settings("student").model_copy(update={"progress": False})

        def report(record: dict[str, Any]) -> None:
            value = record.get(f"val_{cfg.tune.metric}")
            if value is not None and cfg.tune.prune:
                trial.report(value, record["epoch"])
                if 1 < record["epoch"] < s.epochs and trial.should_prune():
                    raise optuna.TrialPruned()

        fit(Supervised(student, s.label_smoothing), make_loader(bundle.train, s.batch_size, shuffle=True,
                                                                seed=s.seed), val_loader, s, None, on_epoch=report)
        logits, labels = predict(student, val_loader)
        return metrics.classification_report(logits, labels, teacher_val)[cfg.tune.metric]

    console.print(f"kdkit tune: the student alone gets the same {total} trials over its own settings "
                  f"({', '.join(space)})", highlight=False)
    study.optimize(objective, n_trials=total, catch=(ConfigError, ValueError),
                   callbacks=[trial_reporter(console, cfg.tune.metric, total, list(space))])
    write_trials(out / "alone_trials.csv", study, cfg.tune.metric, list(space))
    if not complete_trials(study):  # a pruned trial has a value too, but did not finish
        raise ConfigError("no trial of the student alone finished; see alone_trials.csv")
    best = study.best_trial
    return AloneBest(best.value, best.number, decode_params(space, best.params), len(study.trials))


def own_settings(best: dict[str, Any], cfg: RunConfig, distilled: dict[str, Any], alone: AloneBest) -> None:
    """Give each row of `best` (the config, with the distilled trial's values set) its own best settings."""
    from kdkit.families.classification.tune import set_path

    distill_train = best["distill"]["train"]
    original = cfg.model_dump(mode="json")["student"]["train"]
    for path, value in distilled.items():  # the distilled row's student.train values move to distill.train
        if path.startswith(STUDENT_TRAIN):
            key = path.removeprefix(STUDENT_TRAIN)
            distill_train.setdefault(key, value)
            if key in original:
                best["student"]["train"][key] = original[key]
            else:
                best["student"]["train"].pop(key, None)
    pinned = alone_raw(best, cfg)["distill"]["train"]  # what the distilled trials trained with
    for path, value in alone.params.items():
        key = path.removeprefix(STUDENT_TRAIN)
        distill_train.setdefault(key, pinned[key])
        set_path(best, path, value)


def summary(alone: AloneBest, distilled_value: float, metric: str, higher: bool) -> str:
    """One line: the best student alone beside the best distilled trial."""
    values = ", ".join(f"{p.removeprefix(STUDENT_TRAIN)}={json.dumps(v)}" for p, v in alone.params.items())
    ahead = (alone.value > distilled_value) if higher else (alone.value < distilled_value)
    verdict = "the student alone is ahead" if ahead else "the distilled student is ahead"
    return (f"best validation {metric}: distilled {distilled_value:.4f}, student alone {alone.value:.4f} (trial "
            f"{alone.trial} of {alone.trials}: {values}); {verdict}. best.yaml trains each row with its own best "
            "settings")
