"""``DistilledClassifier``: a teacher that sees every training column, a student that sees only the columns
available at prediction time, joined by the teacher's out-of-fold probabilities.

fit(X, y):
  1. StratifiedKFold over the rows; teacher fold model k is trained on the other folds (all teacher columns)
     and predicts fold k, so every row's teacher probability comes from a model that never saw that row;
  2. student targets = (1 - alpha) * teacher probability + alpha * one-hot label;
  3. KFold over the rows; student fold model k learns the targets of the other folds from the student
     columns only, and predicts fold k (``student_oof_``, used for the decision threshold and for scores).
predict_proba(X) averages the student fold models and needs only the student columns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.validation import check_is_fitted

from kdkit.errors import ConfigError, DataError
from kdkit.tabular.evaluate import best_threshold, labels_from
from kdkit.tabular.learners import MODES, Learner, choose_mode
from kdkit.tabular.models import resolve

FoldCallback = Callable[[int, np.ndarray, np.ndarray], None]  # (fold, rows predicted so far, oof) -> None


def as_frame(X: Any) -> pd.DataFrame:
    """DataFrames keep their column names; arrays get integer column names 0..p-1."""
    if isinstance(X, pd.DataFrame):
        return X.reset_index(drop=True)
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise DataError(f"X must be 2-D (rows x columns), got shape {arr.shape}")
    return pd.DataFrame(arr)


def _check_columns(frame: pd.DataFrame, columns: Sequence, what: str) -> list:
    columns = list(columns)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        raise DataError(f"{what} not found in the data: {shown}; check the column names")
    if not columns:
        raise ConfigError(f"{what} is empty; give at least one column")
    return columns


def _check_finite(frame: pd.DataFrame, columns: Sequence, what: str) -> None:
    """Infinite feature values are refused: no model treats them as anything meaningful, and scaled or binned
    they silently become NaN or an extreme bin. NaN stays allowed: it marks a missing value, which the
    boosted models handle natively."""
    for column in columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            infinite = np.isinf(values.to_numpy(dtype=float, na_value=np.nan))
            if infinite.any():
                row = int(np.flatnonzero(infinite)[0])
                raise DataError(f"{what}: column {column!r} has {int(infinite.sum())} infinite value(s) (first at "
                                f"row {row}); replace them, e.g. by a large finite value or by NaN (missing)")


class DistilledClassifier(ClassifierMixin, BaseEstimator):
    """Teacher on all (or ``teacher_columns``) columns, student on ``student_columns``, scikit-learn API.

    ``teacher`` / ``student``: a name (``catboost``, ``lightgbm``, ``xgboost``, ``mlp``, ``logreg``,
    ``random_forest``, ``extra_trees``, ``hist_gb``), a dotted sklearn class name, or an estimator instance.
    ``student_mode``: ``auto`` or one of ``soft``, ``regress``, ``expand``, ``hard`` (see
    :mod:`kdkit.tabular.learners`). ``alpha`` = 1 trains the student on labels alone (no teacher is fit).
    ``tune_threshold`` (binary): pick the P(positive) cut-off that maximises macro F1 on the student's
    out-of-fold predictions. ``preprocess``: ``auto`` (by model family) or ``none`` (raw columns).
    """

    def __init__(
        self,
        teacher: str | Any = "catboost",
        student: str | Any = "lightgbm",
        student_columns: Sequence | None = None,
        teacher_columns: Sequence | None = None,
        teacher_params: dict | None = None,
        student_params: dict | None = None,
        alpha: float = 0.0,
        student_mode: str = "auto",
        n_splits: int = 5,
        shuffle: bool = True,
        seed: int = 0,
        tune_threshold: bool = False,
        categorical_columns: Sequence | None = None,
        preprocess: str = "auto",
    ) -> None:
        self.teacher = teacher
        self.student = student
        self.student_columns = student_columns
        self.teacher_columns = teacher_columns
        self.teacher_params = teacher_params
        self.student_params = student_params
        self.alpha = alpha
        self.student_mode = student_mode
        self.n_splits = n_splits
        self.shuffle = shuffle
        self.seed = seed
        self.tune_threshold = tune_threshold
        self.categorical_columns = categorical_columns
        self.preprocess = preprocess

    # ------------------------------------------------------------------ validation
    def _check_params(self, n_rows: int) -> None:
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha}")
        if not 2 <= int(self.n_splits) <= n_rows:
            raise ConfigError(f"n_splits must be between 2 and the number of rows ({n_rows}), got {self.n_splits}")
        if self.preprocess not in ("auto", "none"):
            raise ConfigError(f"preprocess must be 'auto' or 'none', got {self.preprocess!r}")

    def _encode_target(self, y: Any, n_rows: int) -> np.ndarray:
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != n_rows:
            raise DataError(f"y must be 1-D with one label per row ({n_rows}), got shape {y.shape}")
        if pd.isna(pd.Series(y)).any():
            raise DataError("the target has missing values; drop those rows or fill them")
        enc = LabelEncoder().fit(y)
        self.classes_ = enc.classes_
        if len(self.classes_) < 2:
            raise DataError(f"the target has a single class ({self.classes_[0]!r}); need at least two classes")
        codes = enc.transform(y)
        counts = np.bincount(codes)
        if counts.min() < self.n_splits:
            rare = self.classes_[counts.argmin()]
            raise DataError(
                f"class {rare!r} has only {counts.min()} rows, fewer than n_splits={self.n_splits}; "
                "lower n_splits or merge rare classes"
            )
        return codes

    def _learner(self, spec: Any, params: dict | None, seed: int, columns: list, mode: str) -> Learner:
        family = resolve(spec, "teacher" if mode == "teacher" else "student")
        cls = MODES["hard" if mode == "teacher" else mode]
        prep = "none" if self.preprocess == "none" else None
        return cls(family, dict(params or {}), seed, columns, self.categorical_columns_, len(self.classes_), prep)

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any, *, on_fold: FoldCallback | None = None,
            teacher_proba: np.ndarray | None = None) -> DistilledClassifier:
        """Teacher out-of-fold probabilities, then the K student fold models (see the module docstring).

        ``on_fold(k, done, oof)`` is called after each student fold (used by Optuna pruning); it may raise
        to stop the fit. ``teacher_proba`` (n_rows, n_classes) reuses the ``teacher_oof_`` of an earlier fit on
        the same rows (e.g. to try several alphas) instead of training the teacher again; it must be
        out-of-fold, and ``teacher_predict_proba`` is then unavailable.
        """
        frame = as_frame(X)
        self._check_params(len(frame))
        codes = self._encode_target(y, len(frame))
        if isinstance(X, pd.DataFrame) and all(isinstance(c, str) for c in frame.columns):
            self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.n_features_in_ = frame.shape[1]
        every = list(frame.columns)
        self.teacher_columns_ = _check_columns(
            frame, every if self.teacher_columns is None else self.teacher_columns, "teacher columns")
        self.student_columns_ = _check_columns(
            frame, every if self.student_columns is None else self.student_columns, "student columns")
        _check_finite(frame, dict.fromkeys([*self.teacher_columns_, *self.student_columns_]), "training data")
        if self.categorical_columns is None:
            self.categorical_columns_ = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
        elif len(self.categorical_columns) == 0:
            self.categorical_columns_ = []
        else:
            self.categorical_columns_ = _check_columns(frame, self.categorical_columns, "categorical columns")
        k = len(self.classes_)
        family = resolve(self.student, "student")
        self.student_mode_ = choose_mode(family, self.student_mode, k, float(self.alpha))
        if float(self.alpha) < 1.0 and not resolve(self.teacher, "teacher").is_classifier:
            raise ConfigError("the teacher must be a classifier (it provides class probabilities)")
        onehot = np.eye(k)[codes]
        if float(self.alpha) >= 1.0:
            self.teacher_models_, self.teacher_folds_, self.teacher_oof_ = [], [], None
            self.targets_ = onehot
        else:
            if teacher_proba is None:
                self._fit_teacher(frame, codes)
            else:
                self.teacher_models_, self.teacher_folds_ = [], []
                self.teacher_oof_ = np.asarray(teacher_proba, dtype=np.float64)
                if self.teacher_oof_.shape != onehot.shape:
                    raise DataError(f"teacher_proba must have shape {onehot.shape}, got {self.teacher_oof_.shape}")
            self.targets_ = (1.0 - self.alpha) * self.teacher_oof_ + self.alpha * onehot
        self._fit_student(frame, codes, on_fold)
        self.threshold_ = None
        if self.tune_threshold and k == 2:
            self.threshold_ = best_threshold(codes, self.student_oof_[:, 1])
        return self

    def _fit_teacher(self, frame: pd.DataFrame, codes: np.ndarray) -> None:
        rs = self.seed if self.shuffle else None
        cv = StratifiedKFold(n_splits=self.n_splits, shuffle=self.shuffle, random_state=rs)
        self.teacher_folds_ = list(cv.split(frame, codes))
        self.teacher_oof_ = np.full((len(frame), len(self.classes_)), np.nan)
        self.teacher_models_ = []
        for fold, (train, val) in enumerate(self.teacher_folds_):
            model = self._learner(self.teacher, self.teacher_params, self.seed + fold, self.teacher_columns_,
                                  "teacher")
            model.fit(frame.iloc[train], codes[train], None)
            self.teacher_oof_[val] = model.predict_proba(frame.iloc[val])
            self.teacher_models_.append(model)

    def _fit_student(self, frame: pd.DataFrame, codes: np.ndarray, on_fold: FoldCallback | None) -> None:
        rs = self.seed if self.shuffle else None
        cv = KFold(n_splits=self.n_splits, shuffle=self.shuffle, random_state=rs)
        self.student_folds_ = list(cv.split(frame))
        self.student_oof_ = np.full((len(frame), len(self.classes_)), np.nan)
        self.student_models_ = []
        done = np.zeros(len(frame), dtype=bool)
        for fold, (train, val) in enumerate(self.student_folds_):
            model = self._learner(self.student, self.student_params, self.seed + fold, self.student_columns_,
                                  self.student_mode_)
            model.fit(frame.iloc[train], codes[train], self.targets_[train])
            self.student_oof_[val] = model.predict_proba(frame.iloc[val])
            self.student_models_.append(model)
            done[val] = True
            if on_fold is not None:
                on_fold(fold, done.copy(), self.student_oof_)

    # ------------------------------------------------------------------ prediction
    def _average(self, models: list[Learner], X: Any, columns: list) -> np.ndarray:
        frame = as_frame(X)
        _check_columns(frame, columns, "columns the model was trained on")
        _check_finite(frame, columns, "data to predict")
        return np.mean([m.predict_proba(frame) for m in models], axis=0)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Mean of the student fold models' probabilities; X needs only the student columns."""
        check_is_fitted(self, "student_models_")
        return self._average(self.student_models_, X, self.student_columns_)

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[labels_from(self.predict_proba(X), self.threshold_)]

    def teacher_predict_proba(self, X: Any) -> np.ndarray:
        """Mean of the teacher fold models' probabilities (X needs the teacher columns)."""
        check_is_fitted(self, "teacher_models_")
        if not self.teacher_models_:
            raise ConfigError("no teacher models here (alpha=1, teacher_proba given to fit, or loaded without "
                              "teachers=True)")
        return self._average(self.teacher_models_, X, self.teacher_columns_)
