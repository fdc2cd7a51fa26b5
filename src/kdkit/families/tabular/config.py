"""YAML configs of tabular runs (`kdkit tabular fit CONFIG.yaml`, `kdkit tabular tune CONFIG.yaml`; also `kdkit train`
and `kdkit tune`, which know a tabular config by its ``kind: tabular``), validated with pydantic like every kdkit
config: strict types, no unknown keys, every mistake one line naming the key.

The config is the one owner of every setting: the command's flags (``--alpha``, ``--teacher``, ...) each set one key
of it (kdkit.families.tabular.cli.FLAGS), on top of the file when one is given, and a mistake in a flag's value is the
same line naming the flag instead of the key.

    kind: tabular
    output_dir: runs/tabular              # default: runs/tabular-fit-<time> (or -tune-)
    data: {train: train.csv, test: test.csv, target: Y_LABEL, id_columns: [ID], holdout: {fraction: 0.2, seed: 0}}
    teacher: {name: catboost, params: {iterations: 300}}        # columns: default every train column
    student: {name: lightgbm, mode: auto}                       # columns: default the test file's columns
    distill: {alpha: 0.0, n_splits: 5, tune_threshold: true}
    tune: {trials: 30, metric: log_loss}                        # space: default each model's own and distill.alpha
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, PositiveFloat, PositiveInt, ValidationError, field_validator

from kdkit.config.types import LaxPath, StrictModel
from kdkit.config.validation import format_validation_error
from kdkit.errors import ConfigError
from kdkit.families.tabular.evaluate import LOWER_IS_BETTER, METRICS
from kdkit.tune.config import SearchRange

KIND = "tabular"
FIXED_IN_A_SEARCH = ("kind", "seed", "n_jobs", "output_dir", "data", "tune")  # built once for every trial


class HoldoutConfig(StrictModel):
    fraction: float = Field(0.2, description="share of the training rows held out for the verdict, stratified (unless "
                            "the test file holds the target and every teacher column: then its rows are held out)")
    seed: int = Field(0, ge=0, description="seed of the held-out split; fit and tune with the same one hold out the "
                      "same rows")

    @field_validator("fraction")
    @classmethod
    def _a_share(cls, fraction: float) -> float:
        if not 0.0 < fraction <= 0.5:
            raise ValueError(f"must be a share of the rows in (0, 0.5], got {fraction}; the verdict needs rows that "
                             "no model sees")
        return fraction


class TabularData(StrictModel):
    train: LaxPath = Field(description="training CSV (all columns, with the target)")
    test: LaxPath | None = Field(None, description="test CSV: its columns (minus id_columns) become the student's "
                                 "columns; its rows are predicted")
    target: str = Field(description="name of the target column in the train file")
    id_columns: list[str] = Field(default_factory=list, description="id column(s), excluded from features and "
                                  "copied to predictions")
    keep_columns: list[str] = Field(default_factory=list, description="columns that look like a row id (named like "
                                    "one, or whole numbers unique per row and in order) but are real features")
    holdout: HoldoutConfig = Field(default_factory=HoldoutConfig)


def _model_name(name: str, role: str) -> str:
    from kdkit.families.tabular.models import resolve

    resolve(name, role)  # an unknown name: one line with the closest known one
    return name


class TeacherConfig(StrictModel):
    name: str = Field("catboost", description="catboost, lightgbm, xgboost, mlp, logreg, random_forest, extra_trees, "
                      "hist_gb or a dotted scikit-learn class name")
    params: dict[str, Any] = Field(default_factory=dict, description="its parameters, e.g. {depth: 6}, over kdkit's "
                                   "defaults for the library")
    columns: list[str] | None = Field(None, description="the teacher's columns; default: every train column")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        return _model_name(name, "teacher")


class StudentConfig(StrictModel):
    name: str = Field("lightgbm", description="catboost, lightgbm, xgboost, mlp, logreg, ... (as the teacher)")
    params: dict[str, Any] = Field(default_factory=dict, description="its parameters, e.g. {n_estimators: 300}")
    columns: list[str] | None = Field(None, description="the student's columns, those that exist at prediction time; "
                                      "default: the test file's columns")
    mode: str = Field("auto", description="how it learns probabilities: auto, soft, regress or expand")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        return _model_name(name, "student")

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, mode: str) -> str:
        from kdkit.families.tabular.learners import MODES

        modes = ["auto", *MODES]
        if mode not in modes:
            close = difflib.get_close_matches(mode, modes, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ValueError(f"unknown student mode '{mode}'; {hint}choose one of: {', '.join(modes)}")
        return mode


class TabularDistill(StrictModel):
    alpha: float = Field(0.0, description="student target = (1 - alpha) * teacher probability + alpha * label")
    n_splits: int = Field(5, ge=2, description="folds for the teacher's out-of-fold probabilities and the student")
    tune_threshold: bool = Field(True, description="binary: tune the decision threshold for macro F1 on out-of-fold "
                                 "rows")

    @field_validator("alpha")
    @classmethod
    def _below_one(cls, alpha: float) -> float:
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"must be in [0, 1) (alpha 1 is the 'student alone' row), got {alpha}")
        return alpha


class TabularTune(StrictModel):
    """`kdkit tabular tune`: an Optuna search, each trial the distilled student's out-of-fold score on the fitting
    rows (kdkit.families.tabular.tune)."""

    step: ClassVar[str] = "fold"  # what a pruned trial's line counts (the loop's trial lines)

    trials: PositiveInt = Field(30, description="trials run by this process")
    metric: str = Field("log_loss", description=f"out-of-fold metric of the distilled student that the search "
                        f"optimises: {', '.join(METRICS)}")
    prune: bool = Field(True, description="stop a trial after a student fold when its score so far is worse than the "
                        "median of earlier trials at that fold (Optuna's MedianPruner)")
    space: dict[str, SearchRange] | None = Field(
        None, description="dotted config paths and their ranges, e.g. teacher.params.depth: {low: 3, high: 8, "
        "integer: true}; default: each model's own space and distill.alpha (kdkit.families.tabular.tune)")
    study: str = Field("kdkit-tabular", description="the study's name in its storage (workers sharing a study give "
                       "the same one)")
    timeout: PositiveFloat | None = Field(None, description="stop starting trials after this many seconds")

    @property
    def higher_is_better(self) -> bool:
        return self.metric not in LOWER_IS_BETTER

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric not in METRICS:
            close = difflib.get_close_matches(metric, METRICS, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ValueError(f"unknown metric '{metric}'; {hint}choose one of: {', '.join(METRICS)}")
        return metric

    @field_validator("space")
    @classmethod
    def _trial_paths(cls, space: dict[str, SearchRange] | None) -> dict[str, SearchRange] | None:
        fixed = sorted(p for p in space or {} if p.split(".")[0] in FIXED_IN_A_SEARCH)
        if fixed:
            raise ValueError(f"{', '.join(fixed)}: the data and the run's settings are fixed during a search; "
                             "search teacher.*, student.* and distill.* paths")
        return space


class TabularConfig(StrictModel):
    kind: Literal["tabular"] = Field(KIND, description="marks a tabular config (`kdkit train` and `kdkit tune` read "
                                     "it as one)")
    seed: int = Field(0, ge=0, lt=2**32, description="seeds the folds and every fold model")
    n_jobs: int | None = Field(None, description="threads of each CatBoost, LightGBM, XGBoost or forest model (-1: "
                               "every core; default: each library's own setting), as scikit-learn's n_jobs")
    output_dir: LaxPath | None = Field(None, description="the run directory (default: runs/tabular-fit-<time>, or "
                                       "runs/tabular-tune-<time>); a search writes OUTPUT_DIR/tune/")
    data: TabularData
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    distill: TabularDistill = Field(default_factory=TabularDistill)
    tune: TabularTune = Field(default_factory=TabularTune)

    @field_validator("n_jobs")
    @classmethod
    def _some_threads(cls, n_jobs: int | None) -> int | None:
        if n_jobs == 0:
            raise ValueError("must be a non-zero number of threads (-1: every core), or left out")
        return n_jobs


def is_tabular_config(raw: Any) -> bool:
    """Whether a YAML mapping as read is a tabular config (its ``kind``)."""
    return isinstance(raw, dict) and raw.get("kind") == KIND


def parse_tabular_config(raw: Any, flags: Mapping[str, str] | None = None) -> TabularConfig:
    """Validate a tabular config; every mistake is one ConfigError line naming the key, or the flag when `flags`
    (config path -> flag) says a flag set it."""
    try:
        return TabularConfig.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        flag = (flags or {}).get(path)
        if flag is None:
            raise ConfigError(format_validation_error(err, TabularConfig)) from None
        msg = first["msg"].removeprefix("Value error, ")
        shown = f" (got {first['input']!r})" if repr(first.get("input")) not in msg else ""
        raise ConfigError(f"{flag}: {msg}{shown}") from None


def load_tabular_config(path: str | Path, overrides: Sequence[str] = (),
                        output_dir: str | Path | None = None) -> TabularConfig:
    """The tabular config in `path`, with command-line ``--set`` `overrides` and `output_dir` applied before it is
    validated (kdkit.config.overrides)."""
    from kdkit.config.overrides import apply_overrides
    from kdkit.config.yaml import read_config

    raw = read_config(path)
    if isinstance(raw, dict):
        raw.setdefault("kind", KIND)  # `kdkit tabular fit` knows the kind; `kdkit train` found it in the file
    return parse_tabular_config(apply_overrides(raw, overrides, output_dir))


__all__ = ["KIND", "TabularConfig", "is_tabular_config", "load_tabular_config", "parse_tabular_config"]
