"""``DistilledClassifier``: a teacher that sees every training column, a student that sees only the columns
available at prediction time, joined by the teacher's out-of-fold probabilities.

fit(X, y):
  1. StratifiedKFold over the rows; teacher fold model k is trained on the other folds (all teacher columns)
     and predicts fold k, so every row's teacher probability comes from a model that never saw that row;
  2. student targets = (1 - alpha) * teacher probability + alpha * one-hot label;
  3. KFold over the rows; student fold model k learns the targets of the other folds from the student
     columns only, and predicts fold k (``student_oof_``, used for the decision threshold and for scores).
predict_proba(X) averages the student fold models and needs only the student columns.

A scikit-learn estimator in full (``check_estimator`` passes; see tests/tabular/test_tabular_conformance.py for
the checks skipped and why): clone, pickle and ``joblib.dump`` work after fit, ``random_state`` seeds the folds
and every fold model, ``n_jobs`` sets the thread count of the boosted models, and calling ``predict`` before
``fit`` raises ``NotFittedError``. What X may be is in :mod:`kdkit.families.tabular.inputs`.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from kdkit.errors import ConfigError, DataError, KdkitWarning
from kdkit.families.tabular.evaluate import best_threshold, labels_from
from kdkit.families.tabular.inputs import (
    as_frame,
    check_columns,
    check_finite,
    check_numeric,
    seen_categories,
    select,
    target,
    warn_unseen,
)
from kdkit.families.tabular.learners import MODES, Learner, choose_mode
from kdkit.families.tabular.models import resolve
from kdkit.trainer.progress import FoldProgress


class SmallClassWarning(KdkitWarning):
    """A class has fewer rows than n_splits: the fit uses as many folds as that class has rows."""


FoldCallback = Callable[[int, np.ndarray, np.ndarray], None]  # (fold, rows predicted so far, oof) -> None


class DistilledClassifier(ClassifierMixin, BaseEstimator):
    """Teacher on all (or ``teacher_columns``) columns, student on ``student_columns``, scikit-learn API.

    ``teacher`` / ``student``: a name (``catboost``, ``lightgbm``, ``xgboost``, ``mlp``, ``logreg``,
    ``random_forest``, ``extra_trees``, ``hist_gb``), a dotted sklearn class name, or an estimator instance.
    ``student_mode``: ``auto`` or one of ``soft``, ``regress``, ``expand``, ``hard`` (see
    :mod:`kdkit.families.tabular.learners`). ``alpha`` = 1 trains the student on labels alone (no teacher is fit).
    ``tune_threshold`` (binary): pick the P(positive) cut-off that maximises macro F1 on the student's
    out-of-fold predictions. ``preprocess``: ``auto`` (by model family) or ``none`` (raw columns).
    ``random_state``: an int (fold k's models get ``random_state + k``; the default 0 makes fits repeatable), a
    ``numpy.random.RandomState`` or None (a fresh seed per fit). ``n_jobs``: threads of each CatBoost, LightGBM,
    XGBoost, random-forest / extra-trees model and the torch MLP (-1: every core; None: one for LightGBM, XGBoost
    and the MLP, two for the others, which measured fastest on small tables); ``teacher_params`` /
    ``student_params`` that set a thread count win, estimator instances keep their own. ``seed``: deprecated
    spelling of ``random_state``. ``verbose``: 1 prints one line per fitted fold model (stage, fold, seconds,
    elapsed, ETA) to stdout, as plain lines that a log file keeps.

    Fitted attributes: ``classes_``; ``n_features_in_``, the number of columns of fit's X, and
    ``feature_names_in_`` when they all have string names; ``n_splits_``, the folds used: ``n_splits``, or as many
    as the rarest class has rows when that is fewer (with a ``SmallClassWarning``; a class of one row is refused);
    ``categories_``, each categorical column's values in fit (a prediction row with another value warns, naming
    it: ``UnseenCategoriesWarning``). ``predict`` takes a DataFrame holding the student
    columns by name (other columns are ignored) or an array that is either ``n_features_in_`` wide (fit's
    layout) or exactly ``len(student_columns_)`` wide (the student columns alone, in ``student_columns_``
    order); ``teacher_predict_proba`` the same with the teacher columns.
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
        random_state: int | np.random.RandomState | None = 0,
        n_jobs: int | None = None,
        tune_threshold: bool = False,
        categorical_columns: Sequence | None = None,
        preprocess: str = "auto",
        seed: int | None = None,
        verbose: int = 0,
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
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.tune_threshold = tune_threshold
        self.categorical_columns = categorical_columns
        self.preprocess = preprocess
        self.seed = seed
        self.verbose = verbose

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # NaN is a missing value, which every preprocessing handles
        return tags

    # ------------------------------------------------------------------ validation
    def _check_params(self, n_rows: int) -> None:
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha}")
        if int(self.n_splits) < 2:
            raise ConfigError(f"n_splits must be at least 2, got {self.n_splits}")
        if n_rows < int(self.n_splits):
            raise DataError(f"n_splits={self.n_splits} needs at least as many rows, got n_samples = {n_rows}; "
                            "give more rows or lower n_splits")
        if self.n_jobs is not None and (not isinstance(self.n_jobs, numbers.Integral) or self.n_jobs == 0):
            raise ConfigError(f"n_jobs must be a non-zero integer (-1: every core) or None, got {self.n_jobs!r}")
        if self.preprocess not in ("auto", "none"):
            raise ConfigError(f"preprocess must be 'auto' or 'none', got {self.preprocess!r}")

    def _base_seed(self) -> int:
        """The int every fold's seed derives from: random_state (or the deprecated seed) as sklearn reads it."""
        state = self.random_state
        if self.seed is not None:
            warnings.warn("DistilledClassifier(seed=...) is deprecated; use random_state (same meaning)",
                          DeprecationWarning, stacklevel=3)
            state = self.seed
        if isinstance(state, numbers.Integral):
            return int(state)
        return int(check_random_state(state).randint(np.iinfo(np.int32).max // 2))

    def _encode_target(self, y: Any, n_rows: int) -> np.ndarray:
        y = target(y, n_rows, type(self).__name__)
        enc = LabelEncoder().fit(y)
        self.classes_ = enc.classes_
        if len(self.classes_) < 2:
            raise DataError(f"the target has a single class ({self.classes_[0]!r}); need at least two classes")
        codes = enc.transform(y)
        counts = np.bincount(codes)
        rare, fewest = self.classes_[counts.argmin()], int(counts.min())
        rare = rare.item() if hasattr(rare, "item") else rare  # 2, not np.int64(2), in the messages
        self.n_splits_ = int(self.n_splits)
        if fewest < 2:  # no split leaves a row of that class on both sides: nothing to learn or score it with
            raise DataError(f"class {rare!r} has only {fewest} row, fewer than the 2 folds out-of-fold "
                            "probabilities need; add rows or merge rare classes")
        if fewest < self.n_splits_:  # stratified folds need a row of every class in each fold
            warnings.warn(f"class {rare!r} has only {fewest} rows, fewer than n_splits={self.n_splits}: fitting with "
                          f"{fewest} folds instead; add rows or merge rare classes to keep {self.n_splits}",
                          SmallClassWarning, stacklevel=3)
            self.n_splits_ = fewest
        return codes

    def _learner(self, spec: Any, params: dict | None, seed: int, columns: list, mode: str) -> Learner:
        family = resolve(spec, "teacher" if mode == "teacher" else "student")
        cls = MODES["hard" if mode == "teacher" else mode]
        prep = "none" if self.preprocess == "none" else None
        params = dict(params or {})
        if self.n_jobs is not None and family.threads is not None:
            from joblib import effective_n_jobs  # -1 -> every core, as scikit-learn reads n_jobs

            params = {family.threads: effective_n_jobs(self.n_jobs), **params}
        return cls(family, params, seed, columns, self.categorical_columns_, len(self.classes_), prep)

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
        self._seed = self._base_seed()
        if isinstance(X, pd.DataFrame) and all(isinstance(c, str) for c in frame.columns):
            self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_  # from an earlier fit on a DataFrame
        self.n_features_in_ = frame.shape[1]
        self.columns_in_ = list(frame.columns)
        every = list(frame.columns)
        self.teacher_columns_ = check_columns(
            frame, every if self.teacher_columns is None else self.teacher_columns, "teacher columns")
        self.student_columns_ = check_columns(
            frame, every if self.student_columns is None else self.student_columns, "student columns")
        check_finite(frame, dict.fromkeys([*self.teacher_columns_, *self.student_columns_]), "training data")
        if self.categorical_columns is None:
            self.categorical_columns_ = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
        elif len(self.categorical_columns) == 0:
            self.categorical_columns_ = []
        else:
            self.categorical_columns_ = check_columns(frame, self.categorical_columns, "categorical columns")
        self.categories_ = seen_categories(frame, self.categorical_columns_)
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
        rs = self._seed if self.shuffle else None
        cv = StratifiedKFold(n_splits=self.n_splits_, shuffle=self.shuffle, random_state=rs)
        self.teacher_folds_ = list(cv.split(frame, codes))
        self.teacher_oof_ = np.full((len(frame), len(self.classes_)), np.nan)
        self.teacher_models_ = []
        report = FoldProgress("teacher", self.n_splits_, self.verbose)
        for fold, (train, val) in enumerate(self.teacher_folds_):
            model = self._learner(self.teacher, self.teacher_params, self._seed + fold, self.teacher_columns_,
                                  "teacher")
            model.fit(frame.iloc[train], codes[train], None)
            self.teacher_oof_[val] = model.predict_proba(frame.iloc[val])
            self.teacher_models_.append(model)
            report.fold_done(fold, len(train))

    def _fit_student(self, frame: pd.DataFrame, codes: np.ndarray, on_fold: FoldCallback | None) -> None:
        rs = self._seed if self.shuffle else None
        cv = KFold(n_splits=self.n_splits_, shuffle=self.shuffle, random_state=rs)
        self.student_folds_ = list(cv.split(frame))
        self.student_oof_ = np.full((len(frame), len(self.classes_)), np.nan)
        self.student_models_ = []
        done = np.zeros(len(frame), dtype=bool)
        report = FoldProgress("student", self.n_splits_, self.verbose)
        for fold, (train, val) in enumerate(self.student_folds_):
            model = self._learner(self.student, self.student_params, self._seed + fold, self.student_columns_,
                                  self.student_mode_)
            model.fit(frame.iloc[train], codes[train], self.targets_[train])
            self.student_oof_[val] = model.predict_proba(frame.iloc[val])
            self.student_models_.append(model)
            done[val] = True
            report.fold_done(fold, len(train))
            if on_fold is not None:
                on_fold(fold, done.copy(), self.student_oof_)

    # ------------------------------------------------------------------ prediction
    def _average(self, models: list[Learner], X: Any, columns: list, what: str) -> np.ndarray:
        frame = select(X, columns, getattr(self, "n_features_in_", None), getattr(self, "columns_in_", None),
                       type(self).__name__, what)
        categorical = set(self.categorical_columns_)
        check_numeric(frame, [c for c in columns if c not in categorical], "data to predict")
        warn_unseen(frame, getattr(self, "categories_", None), [c for c in columns if c in categorical])
        return np.mean([m.predict_proba(frame) for m in models], axis=0)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Mean of the student fold models' probabilities; X needs only the student columns."""
        check_is_fitted(self, "student_models_")
        return self._average(self.student_models_, X, self.student_columns_, "student")

    def predict(self, X: Any) -> np.ndarray:
        """Class labels: argmax of predict_proba, or for binary P(classes_[1]) >= threshold_ when one was tuned."""
        proba = self.predict_proba(X)  # first: it raises NotFittedError before fit
        return self.classes_[labels_from(proba, self.threshold_)]

    def teacher_predict_proba(self, X: Any) -> np.ndarray:
        """Mean of the teacher fold models' probabilities (X needs the teacher columns)."""
        check_is_fitted(self, "teacher_models_")
        if not self.teacher_models_:
            raise ConfigError("no teacher models here (alpha=1, teacher_proba given to fit, or loaded without "
                              "teachers=True)")
        return self._average(self.teacher_models_, X, self.teacher_columns_, "teacher")
