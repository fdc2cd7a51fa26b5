"""LightGBM learning soft targets over any number of classes, natively: a softmax cross-entropy objective.

For one row with raw scores z (one per class), p = softmax(z) and a target distribution q (the teacher's
probabilities, mixed with the label), the loss is the cross-entropy L = -sum_k q_k log p_k. Its gradient is
dL/dz_k = p_k - q_k and its Hessian diag(p) - p p^T; gradient boosting grows one tree per class from the diagonal,
p_k (1 - p_k), scaled by K / (K - 1) as LightGBM's own ``multiclass`` objective scales it (Friedman's multiclass
gradient boosting), so that with one-hot targets this objective *is* LightGBM's multiclass softmax, tree for tree.
Boosting starts, as LightGBM's does, from the log of each class's mean target (its share of the labels for
one-hot targets); that start is folded into the first tree of each class, so the saved model is complete.

This replaces the row expansion (each row copied once per class, weighted by q_k; kdkit.families.tabular.learners),
whose cost grows with the number of classes: the same trees are grown from n rows instead of n x K.
"""

from __future__ import annotations

from typing import Any

import numpy as np

EPSILON = 1e-15  # LightGBM's floor for a class share before its log (kEpsilon)
ROUNDS = ("n_estimators", "num_iterations", "num_boost_round", "num_rounds", "num_trees")  # the scikit-learn name too


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


class SoftmaxCrossEntropy:
    """LightGBM custom objective: (raw scores (n, K), Dataset) -> gradient p - q and Hessian diagonal
    K / (K - 1) * p (1 - p), each (n, K). A class rather than a closure so that it pickles."""

    def __init__(self, targets: np.ndarray) -> None:
        self.targets = np.asarray(targets, dtype=np.float64)

    def __call__(self, scores: np.ndarray, data: Any) -> tuple[np.ndarray, np.ndarray]:
        p = softmax(np.asarray(scores, dtype=np.float64).reshape(self.targets.shape))
        k = self.targets.shape[1]
        return p - self.targets, k / (k - 1) * p * (1.0 - p)


class LGBMSoftLabelClassifier:
    """A LightGBM booster fitted to soft targets (n, K) with :class:`SoftmaxCrossEntropy`; ``predict_proba`` gives
    softmax(raw scores), columns in class-code order. Takes LightGBM's parameters under their scikit-learn names or
    their own (``n_estimators``, ``learning_rate``, ``num_leaves``, ``min_child_samples``, ``n_jobs``,
    ``random_state``, ...), as ``LGBMClassifier`` does."""

    def __init__(self, **params: Any) -> None:
        self.params = params

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return dict(self.params)

    def set_params(self, **params: Any) -> LGBMSoftLabelClassifier:
        self.params.update(params)
        return self

    def fit(self, X: Any, targets: np.ndarray) -> LGBMSoftLabelClassifier:
        import lightgbm

        q = np.asarray(targets, dtype=np.float64)
        n, k = q.shape
        params = dict(self.params)
        rounds = next((int(params.pop(key)) for key in ROUNDS if key in params), 100)
        for key in ROUNDS:
            params.pop(key, None)
        # LightGBM drops the columns no split could use (too few rows for min_child_samples); with none left its own
        # objectives grow constant trees but a custom one stops with an error: keep them, they never split anyway
        params.setdefault("feature_pre_filter", False)
        start = np.log(np.maximum(q.mean(axis=0), EPSILON))
        data = lightgbm.Dataset(X, label=q.argmax(axis=1), init_score=np.tile(start, (n, 1)))
        booster = lightgbm.train({**params, "objective": SoftmaxCrossEntropy(q), "num_class": k, "metric": "None"},
                                 data, num_boost_round=rounds)
        _fold_start(booster, start)
        booster.params["objective"] = "custom"  # the objective holds the targets: not kept with the model
        self.booster_, self.classes_, self.n_classes_ = booster, np.arange(k), k
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return softmax(np.asarray(self.booster_.predict(X, raw_score=True), dtype=np.float64))


def _fold_start(booster: Any, start: np.ndarray) -> None:
    """Add each class's starting score to every leaf of its first tree (trees 0..K-1 are the first round), as
    LightGBM does with its own objectives' start, so that predicting needs nothing beyond the booster."""
    trees = booster.dump_model(num_iteration=1)["tree_info"]  # the first round only: dumping all trees is slow
    for k, value in enumerate(start):
        for leaf in range(trees[k]["num_leaves"]):
            booster.set_leaf_output(k, leaf, booster.get_leaf_output(k, leaf) + float(value))
