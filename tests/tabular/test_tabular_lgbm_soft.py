"""LightGBM's native soft-label objective for more than two classes: the softmax cross-entropy's gradient p - q and
Hessian diagonal, LightGBM's own multiclass objective when the targets are one-hot, the exact minimiser on rows
that share their inputs, and the default student mode for LightGBM at K > 2, saved and loaded like any model."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from lightgbm import LGBMClassifier
from sklearn.datasets import make_classification

from kdkit.families.tabular import DistilledClassifier
from kdkit.families.tabular.lgbm_soft import LGBMSoftLabelClassifier, SoftmaxCrossEntropy, softmax
from kdkit.families.tabular.load import load_distiller
from kdkit.families.tabular.save import save_distiller

PARAMS = {"n_estimators": 40, "learning_rate": 0.1, "num_leaves": 7, "min_child_samples": 5, "verbose": -1,
          "n_jobs": 1, "deterministic": True, "force_row_wise": True, "random_state": 0}


def _cross_entropy(z: np.ndarray, q: np.ndarray) -> float:
    return float(-(q * np.log(softmax(z[None]))[0]).sum())


def test_gradient_and_hessian_are_those_of_the_softmax_cross_entropy() -> None:
    rng = np.random.default_rng(0)
    z, q = rng.normal(size=(6, 4)), rng.dirichlet(np.ones(4), size=6)
    grad, hess = SoftmaxCrossEntropy(q)(z, None)
    p = softmax(z)
    np.testing.assert_allclose(grad, p - q, atol=1e-12)
    step = 1e-5
    for i in range(6):
        for k in range(4):
            e = np.zeros(4)
            e[k] = step
            up, mid, down = (_cross_entropy(z[i] + s * e, q[i]) for s in (1, 0, -1))
            assert (up - down) / (2 * step) == pytest.approx(grad[i, k], abs=1e-7)
            # the Hessian's diagonal, scaled by K / (K - 1) as LightGBM's multiclass objective scales it
            assert (up - 2 * mid + down) / step**2 == pytest.approx(hess[i, k] * 3 / 4, abs=1e-4)


def test_one_hot_targets_give_lightgbms_own_multiclass_model() -> None:
    X, y = make_classification(1500, 8, n_informative=6, n_classes=4, weights=[0.55, 0.25, 0.15, 0.05],
                               random_state=0)
    ours = LGBMSoftLabelClassifier(**PARAMS).fit(X, np.eye(4)[y])
    theirs = LGBMClassifier(**PARAMS).fit(X, y)  # starts from the log class shares, as ours does
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=0, atol=1e-12)
    again = pickle.loads(pickle.dumps(ours))
    np.testing.assert_array_equal(again.predict_proba(X), ours.predict_proba(X))


def test_rows_that_share_their_inputs_get_their_mean_target() -> None:
    """The cross-entropy's minimiser over a group of identical rows is the group's mean target distribution."""
    rng = np.random.default_rng(1)
    group = rng.integers(0, 4, 800)
    centres = rng.dirichlet(np.ones(5), size=4)
    q = np.stack([rng.dirichlet(40 * centres[g]) for g in group])  # each row's own target, around its group's
    model = LGBMSoftLabelClassifier(**{**PARAMS, "n_estimators": 300, "learning_rate": 0.3}).fit(
        group[:, None].astype(float), q)
    expected = np.stack([q[group == g].mean(0) for g in range(4)])
    np.testing.assert_allclose(model.predict_proba(np.arange(4.0)[:, None]), expected, atol=1e-4)


def test_lightgbm_students_learn_soft_targets_natively_beyond_two_classes(table_factory, tmp_path) -> None:
    X, y = table_factory(n=300, n_classes=4)
    model = DistilledClassifier(teacher="lightgbm", student="lightgbm", student_columns=["a", "b", "c", "kind"],
                                n_splits=3, teacher_params={"n_estimators": 30},
                                student_params={"n_estimators": 30}).fit(X, y)
    assert model.student_mode_ == "soft"  # no longer the K-fold row expansion
    assert all(isinstance(m.models[0], LGBMSoftLabelClassifier) for m in model.student_models_)
    save_distiller(model, tmp_path / "models")
    loaded = load_distiller(tmp_path)  # a native LightGBM text file: no joblib
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X), rtol=0, atol=1e-12)
    expanded = DistilledClassifier(teacher="lightgbm", student="lightgbm", student_columns=["a", "b", "c", "kind"],
                                   n_splits=3, student_mode="expand", student_params={"n_estimators": 30}).fit(
        X, y, teacher_proba=model.teacher_oof_)
    assert expanded.student_mode_ == "expand"  # still there for whoever asks for it


def test_a_table_too_small_to_split_gives_the_mean_target() -> None:
    """Fewer rows than min_child_samples: no split is possible, and the model is the mean target (as LightGBM's own
    objectives give constant trees then), not an error."""
    rng = np.random.default_rng(0)
    X, q = rng.normal(size=(12, 3)), rng.dirichlet(np.ones(3), size=12)
    model = LGBMSoftLabelClassifier(**{**PARAMS, "min_child_samples": 10}).fit(X, q)
    np.testing.assert_allclose(model.predict_proba(X), np.tile(q.mean(0), (12, 1)), atol=1e-12)
