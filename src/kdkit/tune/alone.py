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
from typing import Any

from kdkit.run.rundir import BEST
from kdkit.tune.config import SearchRange
from kdkit.tune.space import set_path

ALONE_STUDY = "kdkit-alone"
STUDENT_TRAIN = "student.train."


@dataclass
class AloneBest:
    """The best student-alone trial: its validation score, number and values by path."""

    value: float
    trial: int
    params: dict[str, Any]
    trials: int


def default_alone_space(cfg: Any) -> dict[str, SearchRange]:
    """The student's learning rate (log scale, a tenth to 10x), and its augmentation on or off when it has one."""
    s = cfg.settings("student")
    space = {f"{STUDENT_TRAIN}lr": SearchRange(low=s.lr / 10, high=s.lr * 10, log=True)}
    if s.augment:
        space[f"{STUDENT_TRAIN}augment"] = SearchRange(choices=[[dict(op) for op in s.augment], []])
    return space


def alone_space(cfg: Any) -> dict[str, SearchRange]:
    return cfg.tune.alone_space if cfg.tune.alone_space is not None else default_alone_space(cfg)


def alone_raw(raw: dict[str, Any], cfg: Any) -> dict[str, Any]:
    """The config the alone trials vary: the distilled row keeps what it trains with (distill.train pins each key the
    alone search sets), so an alone value never reaches it, nor makes its settings invalid (e.g. cached_views
    without augmentation)."""
    out = copy.deepcopy(raw)
    trained = cfg.settings("distill").model_dump(mode="json")
    for path in alone_space(cfg):
        out["distill"]["train"].setdefault(path.removeprefix(STUDENT_TRAIN), trained[path.removeprefix(STUDENT_TRAIN)])
    return out


def own_settings(best: dict[str, Any], cfg: Any, distilled: dict[str, Any], alone: AloneBest) -> None:
    """Give each row of `best` (the config, with the distilled trial's values set) its own best settings."""
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
            f"{alone.trial} of {alone.trials}: {values}); {verdict}. {BEST} trains each row with its own best "
            "settings")
