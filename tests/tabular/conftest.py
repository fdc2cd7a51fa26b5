"""Shared fixtures for the tabular tests: small synthetic tables with privileged columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

FAST = {
    "catboost": {"iterations": 30},
    "lightgbm": {"n_estimators": 30},
    "xgboost": {"n_estimators": 30},
    "mlp": {"epochs": 15},
    "sklearn.ensemble.ExtraTreesRegressor": {"n_estimators": 20},
}


def privileged_table(n: int = 240, n_classes: int = 2, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Columns a, b, c (noisy views, the student's) and lab0..lab3 (clean, the teacher's only), plus a category."""
    rng = np.random.default_rng(seed)
    priv = rng.normal(size=(n, 4))
    score = priv @ np.array([1.5, -1.0, 1.0, 0.5])
    cuts = np.quantile(score, np.linspace(0, 1, n_classes + 1)[1:-1])
    y = np.digitize(score + rng.normal(scale=0.5, size=n), cuts)
    frame = pd.DataFrame(priv[:, :3] + rng.normal(scale=0.8, size=(n, 3)), columns=["a", "b", "c"])
    frame["kind"] = rng.choice(["p", "q", "r"], n)
    for j in range(4):
        frame[f"lab{j}"] = priv[:, j]
    frame.loc[rng.random(n) < 0.1, "a"] = np.nan
    frame.loc[rng.random(n) < 0.05, "kind"] = np.nan
    return frame, pd.Series(y, name="Y_LABEL")


STUDENT_COLS = ["a", "b", "c", "kind"]


@pytest.fixture
def binary_table() -> tuple[pd.DataFrame, pd.Series]:
    return privileged_table()


@pytest.fixture
def table_factory():
    return privileged_table


@pytest.fixture
def fast():
    """Build a DistilledClassifier with few iterations and 3 folds, student on STUDENT_COLS."""
    from kdkit.families.tabular import DistilledClassifier

    def build(teacher: str, student: str, **kw: object) -> DistilledClassifier:
        return DistilledClassifier(teacher=teacher, student=student, teacher_params=FAST.get(teacher),
                                   student_params=FAST.get(student), student_columns=STUDENT_COLS, n_splits=3,
                                   **kw)

    return build
