"""Fold models: preprocessing + one estimator, trained on hard labels or on soft targets.

How a student learns from a probability matrix P (n, K) is its *mode* (registry ``MODES``):

- ``hard``: a classifier on the labels only (the "student alone" baseline, and every teacher);
- ``soft``: a loss that accepts probabilistic labels: CatBoost ``CrossEntropy``, LightGBM ``cross_entropy``,
  XGBoost ``binary:logistic`` (binary), LightGBM's softmax cross-entropy (any K, kdkit.families.tabular.lgbm_soft), or
  the torch MLP's KD loss (any K);
- ``regress``: a regressor per class on the probabilities (one for binary, as in the original recipe),
  clipped to [0, 1] and renormalised;
- ``expand``: each row repeated once per class k with sample weight P[:, k]; the weighted log loss of the
  expanded set equals the soft-target cross-entropy, so any classifier with ``sample_weight`` learns P exactly
  (at K times the rows: for a family with a soft loss over K classes, ``soft`` is the default).

Every learner predicts an (n, K) matrix whose column k is class code k, whatever the estimator's own order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from kdkit.errors import ConfigError
from kdkit.families.tabular.models import Family
from kdkit.families.tabular.prep import Preprocessor


def _align(proba: np.ndarray, model_classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Put the estimator's probability columns at their class-code positions (absent classes get 0)."""
    out = np.zeros((len(proba), n_classes))
    out[:, np.asarray(model_classes, dtype=int)] = proba
    return out


def _positive(model: Any, X: Any) -> np.ndarray:
    """Probability of class 1 from a binary-soft model (classifier or regressor with a logistic output)."""
    p = model.predict_proba(X)[:, 1] if hasattr(model, "predict_proba") else model.predict(X)
    return np.clip(np.asarray(p, dtype=np.float64).ravel(), 0.0, 1.0)


class Learner:
    """Base: fit the preprocessing on the fold, then the estimator(s); subclasses differ in the targets."""

    mode = "hard"

    def __init__(self, family: Family, params: dict, seed: int, columns: list, categorical: list,
                 n_classes: int, prep: str | None = None) -> None:
        self.family, self.params, self.seed = family, params, seed
        self.n_classes = n_classes
        self.prep = Preprocessor(prep or family.prep, list(columns), list(categorical))
        self.models: list[Any] = []

    @property
    def columns(self) -> list:
        return self.prep.columns

    def _build(self, builder: Any) -> Any:
        try:
            return builder(dict(self.params), self.seed, self.prep.cat_features)
        except Exception as err:  # constructors reject unknown or invalid parameters in library-specific ways
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"cannot build {self.family.name} with parameters {self.params}: {first}") from None

    def fit(self, X: pd.DataFrame, codes: np.ndarray, targets: np.ndarray | None) -> Learner:
        Xp = self.prep.fit(X).transform(X)
        self._fit(Xp, codes, targets)
        return self

    def _fit(self, Xp: Any, codes: np.ndarray, targets: np.ndarray | None) -> None:
        model = self._build(self.family.classifier)
        model.fit(Xp, codes)
        self.models = [model]

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self._predict(self.prep.transform(X))

    def _predict(self, Xp: Any) -> np.ndarray:
        model = self.models[0]
        return _align(model.predict_proba(Xp), model.classes_, self.n_classes)


class SoftLearner(Learner):
    mode = "soft"

    def _fit(self, Xp: Any, codes: np.ndarray, targets: np.ndarray | None) -> None:
        if self.family.soft == "kd":
            model = self._build(self.family.classifier)
            model.fit(Xp, codes, soft_targets=targets)
        elif self.n_classes > 2:
            model = self._build(self.family.soft_multi)
            model.fit(Xp, targets)
        else:
            model = self._build(self.family.soft_binary)
            model.fit(Xp, targets[:, 1])
        self.models = [model]

    def _predict(self, Xp: Any) -> np.ndarray:
        model = self.models[0]
        if self.family.soft == "kd" or self.n_classes > 2:  # one probability column per class
            return _align(model.predict_proba(Xp), model.classes_, self.n_classes)
        p = _positive(model, Xp)
        return np.column_stack([1.0 - p, p])


class RegressLearner(Learner):
    mode = "regress"

    def _fit(self, Xp: Any, codes: np.ndarray, targets: np.ndarray | None) -> None:
        cols = [1] if self.n_classes == 2 else range(self.n_classes)
        self.models = [self._build(self.family.regressor).fit(Xp, targets[:, k]) for k in cols]

    def _predict(self, Xp: Any) -> np.ndarray:
        preds = np.column_stack([np.asarray(m.predict(Xp), dtype=np.float64).ravel() for m in self.models])
        preds = np.clip(preds, 0.0, 1.0)
        if self.n_classes == 2:
            return np.column_stack([1.0 - preds[:, 0], preds[:, 0]])
        total = preds.sum(axis=1, keepdims=True)
        return np.where(total > 0, preds / np.where(total > 0, total, 1.0), 1.0 / self.n_classes)


class ExpandLearner(Learner):
    mode = "expand"

    def _fit(self, Xp: Any, codes: np.ndarray, targets: np.ndarray | None) -> None:
        k, n = self.n_classes, len(codes)
        rep = pd.concat([Xp] * k, ignore_index=True) if isinstance(Xp, pd.DataFrame) else np.tile(Xp, (k, 1))
        labels = np.repeat(np.arange(k), n)
        weights = targets.T.ravel()  # block j holds every row with label j, weighted by P[:, j]
        model = self._build(self.family.classifier)
        model.fit(rep, labels, sample_weight=weights)
        self.models = [model]


MODES: dict[str, type[Learner]] = {
    "hard": Learner,
    "soft": SoftLearner,
    "regress": RegressLearner,
    "expand": ExpandLearner,
}


def _has_soft_loss(family: Family, n_classes: int) -> bool:
    return (family.soft == "kd" or (family.soft == "binary_prob" and n_classes == 2)
            or (n_classes > 2 and family.soft_multi is not None))


def choose_mode(family: Family, mode: str, n_classes: int, alpha: float) -> str:
    """Resolve ``auto`` and check that the family can learn the way it was asked to."""
    if mode == "auto":
        if alpha >= 1.0 and family.is_classifier:
            return "hard"
        if not family.is_classifier:
            return "regress"
        if _has_soft_loss(family, n_classes):
            return "soft"
        return "expand" if family.weights else "regress"
    if mode not in MODES:
        raise ConfigError(f"unknown student_mode '{mode}'; choose one of: auto, {', '.join(MODES)}")
    name = family.name
    soft_ok = _has_soft_loss(family, n_classes)
    problems = {
        "hard": (alpha < 1.0 and "'hard' ignores the teacher; use alpha=1 or another student_mode")
        or (not family.is_classifier and f"'hard' needs a classifier, '{name}' is a regressor"),
        "soft": not soft_ok and f"'{name}' has no soft-label loss for {n_classes} classes; use 'expand' or 'regress'",
        "regress": family.regressor is None and f"'{name}' has no regressor; use 'expand' or 'soft'",
        "expand": not (family.weights and family.is_classifier)
        and f"'{name}' is not a classifier accepting sample_weight; use 'regress'",
    }
    if problems[mode]:
        raise ConfigError(f"student_mode {problems[mode]}")
    return mode
