"""The rows a tabular verdict is measured on: rows that no model saw while it was fitted or chosen.

Out-of-fold scores of the distilled student lean optimistic: the teacher fold models that wrote its training targets
saw the rows it is scored on (a teacher that memorises its rows hands their labels to the student through its
neighbours' targets). So `kdkit tabular fit` and `tune` hold rows out before anything is fitted:

- a `--test` file that holds the target and every teacher column: its rows;
- otherwise a stratified share of the training file (`--holdout`, default 20%, seeded by `--seed`; at least
  MIN_ROWS rows, or half a tiny table, and one row per class), the same rows for `fit` and `tune` with the same
  seed and share, so parameters tuned on the rest are judged on rows the search never saw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kdkit.errors import ConfigError, DataError
from kdkit.families.tabular.io import TabularTask, line_of

FRACTION = 0.2
MIN_ROWS = 20  # a held-out share below this many rows says little; tiny tables hold out up to half instead


@dataclass
class HeldOut:
    """Training rows (X, y) for every model and held-out rows (X_held, y_held) for the verdict, with where the
    held-out rows come from in words and, when they come from the training file, their file lines."""

    X: pd.DataFrame
    y: pd.Series
    X_held: pd.DataFrame
    y_held: pd.Series
    source: str
    lines: list[int] | None = None  # the training file's line numbers of the held-out rows

    def as_dict(self) -> dict:
        return {"rows": len(self.y_held), "source": self.source, "fit_rows": len(self.y)}


def check_fraction(fraction: float) -> None:
    if not 0.0 < fraction <= 0.5:
        raise ConfigError(f"--holdout must be a share of the rows in (0, 0.5], got {fraction}; the verdict needs "
                          "rows that no model sees")


def held_out_size(n_rows: int, n_classes: int, fraction: float) -> int:
    """ceil(fraction x rows), raised to MIN_ROWS (at most half the table) and to one row per class."""
    return max(math.ceil(fraction * n_rows), min(MIN_ROWS, n_rows // 2), n_classes)


def split_training_rows(y: pd.Series, fraction: float, seed: int, n_splits: int, path: str) -> tuple[np.ndarray,
                                                                                                    np.ndarray]:
    """Positions (fit, held out) of a stratified split of the training rows; DataError when the rest would leave a
    class with fewer rows than the folds need."""
    from sklearn.model_selection import train_test_split

    n_held = held_out_size(len(y), y.nunique(), fraction)
    counts = y.value_counts()
    if n_held >= len(y) or counts.min() < 2:
        raise DataError(f"{path}: {len(y)} rows are too few to hold out {n_held} for the verdict and fit on the rest "
                        f"(class {counts.idxmin()!r} has {int(counts.min())} row(s)); give more rows, or a labelled "
                        "--test file with every teacher column")
    fit, held = train_test_split(np.arange(len(y)), test_size=n_held, stratify=y.to_numpy(), random_state=seed)
    rest = y.iloc[fit].value_counts()
    if len(rest) < len(counts) or rest.min() < n_splits:
        rare = counts.index[[c not in rest or rest[c] < n_splits for c in counts.index]][0]
        raise DataError(f"{path}: after holding out {n_held} rows for the verdict, class {rare!r} keeps "
                        f"{int(rest.get(rare, 0))} row(s) to fit on, fewer than the {n_splits} folds of --n-splits; "
                        "lower --holdout or --n-splits, add rows, or give a labelled --test file")
    return np.sort(fit), np.sort(held)


def choose_held_out(task: TabularTask, fraction: float, seed: int, n_splits: int, train: str,
                    test: str | None) -> HeldOut:
    """The labelled test file's rows when it has the target and every teacher column, else a stratified share of
    the training rows (see the module docstring)."""
    check_fraction(fraction)
    if task.test_y is not None and task.test_features is not None:
        unknown = sorted(set(task.test_y.unique()) - set(task.y.unique()), key=str)
        if unknown:
            raise DataError(f"{test}: target class {unknown[0]!r} does not occur in {train}; a model cannot predict "
                            "a class it never saw")
        return HeldOut(task.X, task.y, task.test_features, task.test_y,
                       f"the {len(task.test_y):,} labelled rows of {test}")
    fit, held = split_training_rows(task.y, fraction, seed, n_splits, train)
    lines = [line_of(task.X, int(i)) for i in held]
    return HeldOut(task.X.iloc[fit], task.y.iloc[fit], task.X.iloc[held], task.y.iloc[held],
                   f"{len(held):,} rows of {train} ({fraction:.0%}, stratified by the target, seed {seed})", lines)


def lines_csv(lines: list[int]) -> str:
    """holdout.csv: the training file's line number of every held-out row (the header is line 1)."""
    return "line\n" + "".join(f"{line}\n" for line in lines)


__all__ = ["FRACTION", "HeldOut", "MIN_ROWS", "check_fraction", "choose_held_out", "held_out_size", "lines_csv",
           "split_training_rows"]
