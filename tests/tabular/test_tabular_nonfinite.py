"""Infinite feature values are refused with one line in fit and predict; NaN (a missing value) is still allowed."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import STUDENT_COLS, privileged_table

from kdkit.errors import DataError
from kdkit.families.tabular import DistilledClassifier


def _model() -> DistilledClassifier:
    return DistilledClassifier(teacher="hist_gb", student="hist_gb", student_columns=STUDENT_COLS, n_splits=2,
                               alpha=1.0)


def test_infinite_values_are_refused_in_fit_and_predict():
    frame, y = privileged_table(n=80)
    bad = frame.copy()
    bad.loc[7, "b"] = np.inf
    with pytest.raises(DataError, match=r"training data: column 'b' has 1 infinite value\(s\) \(first at row 7\)"):
        _model().fit(bad, y)
    model = _model().fit(frame, y)  # NaN in column a: missing values are fine
    bad.loc[3, "c"] = -np.inf
    with pytest.raises(DataError, match="data to predict: column 'b'"):
        model.predict(bad[STUDENT_COLS])
    assert len(model.predict(frame[STUDENT_COLS])) == len(frame)
