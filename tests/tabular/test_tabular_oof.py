"""The out-of-fold contract: no teacher probability of a row comes from a model that was trained on that row."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

from kdkit.families.tabular import DistilledClassifier

UNSEEN, SEEN = 0.25, 0.99


class SpyClassifier(ClassifierMixin, BaseEstimator):
    """Remembers the row ids it was trained on; predicts SEEN for those rows and UNSEEN for the others."""

    def fit(self, X: pd.DataFrame, y: np.ndarray, sample_weight: np.ndarray | None = None) -> SpyClassifier:
        self.seen_ = set(X["row_id"])
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = np.where(X["row_id"].isin(self.seen_), SEEN, UNSEEN)
        return np.column_stack([1 - p, p])


def _data(n: int = 60) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"row_id": np.arange(n), "x": rng.normal(size=n), "z": rng.normal(size=n)})
    return X, (X["x"] + rng.normal(scale=0.5, size=n) > 0).astype(int).to_numpy()


def test_teacher_probabilities_never_come_from_a_model_that_saw_the_row() -> None:
    X, y = _data()
    model = DistilledClassifier(teacher=SpyClassifier(), student=SpyClassifier(), student_columns=["row_id", "x"],
                                student_mode="expand", preprocess="none", n_splits=4).fit(X, y)
    assert np.allclose(model.teacher_oof_[:, 1], UNSEEN)
    assert np.allclose(model.student_oof_[:, 1], UNSEEN)  # the student's out-of-fold rows are unseen too
    for m in model.teacher_models_:  # each fold model did see other rows
        assert len(m.models[0].seen_) == 45


def test_folds_partition_rows_and_are_stratified() -> None:
    X, y = _data(80)
    model = DistilledClassifier(teacher="logreg", student="logreg", student_columns=["x"], n_splits=4).fit(X, y)
    val = np.concatenate([v for _, v in model.teacher_folds_])
    assert sorted(val) == list(range(80))
    for train, v in model.teacher_folds_:
        assert not set(train) & set(v)
        assert abs(y[v].mean() - y.mean()) < 0.1
    assert sorted(np.concatenate([v for _, v in model.student_folds_])) == list(range(80))


def test_student_targets_mix_teacher_and_label_with_alpha() -> None:
    X, y = _data()
    model = DistilledClassifier(teacher=SpyClassifier(), student="logreg", student_columns=["x"],
                                preprocess="none", alpha=0.3, n_splits=3).fit(X, y)
    assert np.allclose(model.targets_[:, 1], 0.7 * UNSEEN + 0.3 * y)
    assert np.allclose(model.targets_.sum(axis=1), 1.0)


def test_alpha_one_fits_no_teacher_and_same_seed_reproduces() -> None:
    X, y = _data()
    alone = DistilledClassifier(teacher=SpyClassifier(), student="lightgbm", student_columns=["x", "z"],
                                student_params={"n_estimators": 20}, alpha=1.0, n_splits=3).fit(X, y)
    assert alone.teacher_oof_ is None and alone.student_mode_ == "hard"
    again = DistilledClassifier(**alone.get_params()).fit(X, y)
    assert np.array_equal(alone.student_oof_, again.student_oof_)


def test_threshold_is_tuned_on_out_of_fold_predictions() -> None:
    X, y = _data(120)
    model = DistilledClassifier(teacher="logreg", student="logreg", student_columns=["x"], n_splits=3,
                                tune_threshold=True).fit(X, y)
    assert 0.0 < model.threshold_ < 1.0
    expected = (model.predict_proba(X)[:, 1] >= model.threshold_).astype(int)
    assert np.array_equal(model.predict(X), model.classes_[expected])
