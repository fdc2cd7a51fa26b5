"""The `tune` section of a config, shared by the families: the trials, the metric, pruning and the search space
(dotted config paths and their ranges) of the distilled student and of the student alone."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from kdkit.config.types import StrictModel


class SearchRange(StrictModel):
    """One hyperparameter's range for `kdkit tune`: low/high (log: sample on a log scale) or a list of choices."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = Field(False, description="draw whole numbers (epochs, widths, batch sizes)")
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _range_or_choices(self) -> SearchRange:
        if self.choices is not None:
            if self.low is not None or self.high is not None or not self.choices:
                raise ValueError("give either choices: [...] (not empty) or low and high, not both")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"give low < high (or choices: [...]); got low {self.low}, high {self.high}")
        elif self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0; got {self.low}")
        elif self.integer and math.ceil(self.low) > math.floor(self.high):
            raise ValueError(f"no whole number lies in [{self.low}, {self.high}]")
        return self


class TuneConfig(StrictModel):
    """`kdkit tune`: an Optuna search over config values, each trial scored on the validation split."""

    trials: PositiveInt = Field(20, description="number of trials (each distils the student once)")
    metric: Literal["accuracy", "macro_f1", "nll", "ece", "agreement", "predictive_kl"] = Field(
        "macro_f1", description="validation metric of the distilled student that the search optimises"
    )
    prune: bool = Field(True, description="stop a trial early when its validation metric, epoch by epoch, is worse "
                        "than the median of earlier trials at the same epoch (Optuna's MedianPruner)")
    space: dict[str, SearchRange] | None = Field(
        None, description="dotted config paths and their ranges, e.g. distill.losses.kd.T (a term by name) or "
        "distill.losses.0.T (by position): {low: 1, high: 10, log: true}; by default T and alpha of the scheme (see "
        "kdkit.families.classification.tune.default_space)",
    )

    alone: bool = Field(True, description="give the student alone the same number of trials over its own train "
                        "settings (tune.alone_space), print its best validation score beside the best distilled "
                        "trial, and write each row's own best settings into best.yaml (kdkit.tune.alone)")
    alone_space: dict[str, SearchRange] | None = Field(
        None, description="the student alone's search: student.train.* paths only (lr, epochs, augment, ...); "
        "default: student.train.lr from a tenth to 10x its value, and student.train.augment with or without the "
        "configured ops when there are any",
    )

    @field_validator("alone_space")
    @classmethod
    def _alone_paths(cls, space: dict[str, SearchRange] | None) -> dict[str, SearchRange] | None:
        # the same student, built the same way: the alone row may only train differently
        other = sorted(p for p in space or {} if not p.startswith("student.train."))
        if other:
            raise ValueError(f"{', '.join(other)}: the student alone's search changes how it trains, not what it "
                             "is; give student.train.* paths (lr, epochs, augment, weight_decay, ...)")
        return space

    @field_validator("space")
    @classmethod
    def _student_side_paths(cls, space: dict[str, SearchRange] | None) -> dict[str, SearchRange] | None:
        # the data and the teacher are built once for the whole search: a trial cannot change them
        fixed = sorted(p for p in space or {} if p.split(".")[0] in ("seed", "output_dir", "data", "teacher", "tune"))
        if fixed:
            raise ValueError(f"{', '.join(fixed)}: the data and the teacher are fixed during a search (built once, "
                             "shared by every trial); search student.* and distill.* paths, or run one search each")
        return space
