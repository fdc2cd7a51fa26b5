"""DistilledClassifier behaves like a scikit-learn classifier, for every family and student mode."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from kdkit.errors import ConfigError, DataError
from kdkit.families.tabular import DistilledClassifier, TorchMLPClassifier
from kdkit.families.tabular.inputs import UnseenCategoriesWarning

STUDENT_COLS = ["a", "b", "c", "kind"]  # as in conftest.py


def test_clone_and_params_round_trip(fast) -> None:
    model = fast("catboost", "lightgbm", alpha=0.2)
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    copy.set_params(alpha=0.5, student="xgboost")
    assert copy.alpha == 0.5 and model.alpha == 0.2


def test_cross_val_score_and_pipeline(binary_table, fast) -> None:
    X, y = binary_table
    scores = cross_val_score(fast("lightgbm", "lightgbm"), X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.6
    pipe = make_pipeline(FunctionTransformer(lambda d: d.copy()), fast("lightgbm", "logreg"))
    assert pipe.fit(X, y).predict_proba(X[STUDENT_COLS]).shape == (len(X), 2)


@pytest.mark.parametrize(
    ("teacher", "student", "mode"),
    [("catboost", "catboost", "soft"), ("lightgbm", "lightgbm", "soft"), ("xgboost", "xgboost", "soft"),
     ("lightgbm", "lightgbm", "regress"), ("lightgbm", "mlp", "soft"), ("lightgbm", "logreg", "expand"),
     ("lightgbm", "sklearn.ensemble.ExtraTreesRegressor", "regress")],
)
def test_binary_families_predict_probabilities(binary_table, fast, teacher: str, student: str, mode: str) -> None:
    X, y = binary_table
    model = fast(teacher, student, student_mode=mode).fit(X, y)
    assert model.student_mode_ == mode
    proba = model.predict_proba(X[STUDENT_COLS])  # only the student's columns are needed
    assert proba.shape == (len(X), 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert set(model.predict(X[STUDENT_COLS])) <= {0, 1}
    assert not np.isnan(model.teacher_oof_).any()


@pytest.mark.parametrize(("student", "mode"), [("lightgbm", "expand"), ("catboost", "regress"), ("mlp", "soft")])
def test_multiclass_students(table_factory, fast, student: str, mode: str) -> None:
    X, y = table_factory(n=240, n_classes=3)
    y = y.map({0: "low", 1: "mid", 2: "high"})
    model = fast("lightgbm", student, student_mode=mode).fit(X, y)
    proba = model.predict_proba(X)
    assert proba.shape == (240, 3) and np.allclose(proba.sum(axis=1), 1.0)
    assert list(model.classes_) == ["high", "low", "mid"]
    assert (model.predict(X) == y).mean() > 0.5


def test_numpy_input_with_integer_columns(binary_table) -> None:
    X, y = binary_table
    arr = X[["a", "b", "c", "lab0", "lab1"]].to_numpy()
    model = DistilledClassifier(teacher="logreg", student="logreg", student_columns=[0, 1, 2], n_splits=3)
    assert model.fit(arr, y.to_numpy()).predict_proba(arr[:, :3]).shape == (len(arr), 2)


def test_estimator_instances_as_teacher_and_student(binary_table) -> None:
    from lightgbm import LGBMClassifier

    X, y = binary_table
    model = DistilledClassifier(teacher=LGBMClassifier(n_estimators=20, verbose=-1),
                                student=TorchMLPClassifier(epochs=5), student_columns=STUDENT_COLS, n_splits=3)
    assert model.fit(X, y).student_mode_ == "soft"


def test_invalid_arguments_are_one_line_errors(binary_table) -> None:
    X, y = binary_table
    cases = [
        (dict(alpha=1.5), ConfigError, "alpha"),
        (dict(student="nosuchmodel"), ConfigError, "unknown student"),
        (dict(student_columns=["a", "zzz"]), DataError, "zzz"),
        (dict(student_mode="hard"), ConfigError, "alpha=1"),
        (dict(student_params={"no_such_param": 1}, student="catboost"), ConfigError, "cannot build"),
    ]
    for kwargs, err, text in cases:
        with pytest.raises(err, match=text) as info:
            DistilledClassifier(**{"teacher": "logreg", "student": "logreg", "n_splits": 3, **kwargs}).fit(X, y)
        assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="single class"):
        DistilledClassifier(teacher="logreg", student="logreg").fit(X, np.zeros(len(X)))


def test_predicting_text_in_a_numeric_column_or_unseen_categories(fast, binary_table) -> None:
    """Text where fit had numbers is refused in one line naming the column and the row; categories absent from fit
    give one warning naming the column and the values (here: predicted as if unknown), none when all were seen."""
    X, y = binary_table
    model = fast("lightgbm", "lightgbm").fit(X, y)
    rows = X[STUDENT_COLS].iloc[:6].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict_proba(rows)  # every category was seen in fit: no warning
    typo = rows.astype({"b": object})
    typo.iloc[4, typo.columns.get_loc("b")] = "abc"
    with pytest.raises(DataError, match=r"column 'b' is numeric but row 4 holds the non-numeric value 'abc'") as info:
        model.predict_proba(typo)
    assert "\n" not in str(info.value)
    odd = rows.copy()
    odd.iloc[:3, odd.columns.get_loc("kind")] = ["castle", "astronaut", "castle"]
    with pytest.warns(UnseenCategoriesWarning, match=r"column 'kind': 3 row\(s\) hold 2 categories never seen in "
                      r"training: 'astronaut', 'castle'"):
        proba = model.predict_proba(odd)
    missing = odd.assign(kind=[np.nan] * 3 + list(odd["kind"].iloc[3:]))
    np.testing.assert_allclose(proba, model.predict_proba(missing))  # LightGBM's codes: unknown = missing
    assert model.categories_ == {"kind": ["p", "q", "r"]}
