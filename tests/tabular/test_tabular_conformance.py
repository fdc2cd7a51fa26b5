"""DistilledClassifier as scikit-learn users expect it: every check of check_estimator, pickling after fit,
random_state and n_jobs, NotFittedError, numpy input with integer columns for every student kind, and an
n_features_in_ that says what predict takes.

No check is skipped: ``expected_failed_checks`` stays empty for the configurations below, and the checks that run
are exactly scikit-learn's full list for the pinned version (CHECKS), so a check that stops running is noticed.
CatBoost as a *student* is left out of check_estimator: on the checks' 12-row tables the teacher's out-of-fold
probabilities can be equal on every row of a fold, and CatBoost refuses constant targets (README, "Tabular data",
scikit-learn conformance).
"""

from __future__ import annotations

import pickle
import warnings

import joblib
import numpy as np
import pytest
import sklearn
from conftest import FAST
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import estimator_checks_generator, parametrize_with_checks

from kdkit.errors import DataError
from kdkit.families.tabular import DistilledClassifier
from kdkit.families.tabular.estimator import SmallClassWarning

EXPECTED_FAILED_CHECKS: dict[str, str] = {}  # none; a check that cannot pass is listed here with its reason
CONFIGS = [
    DistilledClassifier(teacher="logreg", student="logreg"),  # 5 folds, the default, on the checks' small tables
    DistilledClassifier(teacher="logreg", student="logreg", n_splits=2),
    DistilledClassifier(n_splits=2, teacher_params=FAST["catboost"], student_params=FAST["lightgbm"]),  # defaults
    DistilledClassifier(teacher="lightgbm", student="mlp", n_splits=2, teacher_params=FAST["lightgbm"],
                        student_params={"epochs": 5}),
]


@parametrize_with_checks(CONFIGS, expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_check_estimator(estimator, check) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the libraries' own warnings on the checks' tiny tables
        check(estimator)


SKLEARN = "1.9.1"  # the version whose every check CHECKS names
CHECKS = sorted([
    "check_array_api_input", "check_classifier_data_not_an_array", "check_classifiers_classes",
    "check_classifiers_one_label", "check_classifiers_one_label_sample_weights", "check_classifiers_regression_target",
    "check_classifiers_train", "check_classifiers_train", "check_classifiers_train", "check_complex_data",
    "check_decision_proba_consistency", "check_dict_unchanged", "check_do_not_raise_errors_in_init_or_set_params",
    "check_dont_overwrite_parameters", "check_dtype_object", "check_estimator_cloneable", "check_estimator_repr",
    "check_estimator_sparse_array", "check_estimator_sparse_matrix", "check_estimator_sparse_tag",
    "check_estimator_tags_renamed", "check_estimators_dtypes", "check_estimators_empty_data_messages",
    "check_estimators_fit_returns_self", "check_estimators_overwrite_params", "check_estimators_partial_fit_n_features",
    "check_estimators_pickle", "check_estimators_pickle", "check_estimators_unfitted",
    "check_f_contiguous_array_estimator", "check_fit1d", "check_fit2d_1feature", "check_fit2d_1sample",
    "check_fit2d_predict1d", "check_fit_check_is_fitted",
    "check_fit_idempotent", "check_fit_score_takes_y", "check_get_params_invariance",
    "check_methods_sample_order_invariance", "check_methods_subset_invariance", "check_mixin_order",
    "check_n_features_in", "check_n_features_in_after_fitting", "check_no_attributes_set_in_init",
    "check_non_transformer_estimators_n_iter", "check_parameters_default_constructible", "check_pipeline_consistency",
    "check_positive_only_tag_during_fit", "check_readonly_memmap_input", "check_requires_y_none", "check_set_params",
    "check_supervised_y_2d", "check_supervised_y_no_nan", "check_valid_tag_types",
])


@pytest.mark.parametrize("estimator", CONFIGS, ids=lambda est: f"n_splits={est.n_splits},student={est.student}")
def test_the_checks_are_the_full_list_of_the_pinned_scikit_learn(estimator) -> None:
    """check_estimator's whole list runs (none dropped by a tag or an expected failure): the list of the version
    pinned here; another version's list must be read again and pinned, or a check could stop running unnoticed."""
    assert sklearn.__version__ == SKLEARN, (f"scikit-learn {sklearn.__version__} is installed, CHECKS lists the checks "
                                            f"of {SKLEARN}: pin the installed version's list")
    names = [getattr(check, "func", check).__name__ for _, check in
             estimator_checks_generator(estimator, legacy=True, expected_failed_checks=EXPECTED_FAILED_CHECKS)]
    assert sorted(names) == CHECKS


def test_a_class_smaller_than_the_folds_fits_with_fewer_folds_and_says_so() -> None:
    """scikit-learn's check_fit2d_1feature table (10 rows, a class of 3) at the default 5 folds: 3 folds, a warning
    naming the class; a class of one row cannot be split and is refused."""
    X = 3 * np.random.RandomState(0).uniform(size=(10, 1))
    y = X[:, 0].astype(int)
    assert np.bincount(y).tolist() == [0, 7, 3]
    with pytest.warns(SmallClassWarning, match=r"class 2 has only 3 rows, fewer than n_splits=5: fitting "
                      r"with 3 folds"):
        model = DistilledClassifier(teacher="logreg", student="logreg").fit(X, y)
    assert model.n_splits_ == 3 and len(model.student_models_) == 3 and len(model.teacher_models_) == 3
    y[0] = 5
    with pytest.raises(DataError, match="class 5 has only 1 row"):
        DistilledClassifier(teacher="logreg", student="logreg").fit(X, y)


def _numpy_table(binary_table) -> tuple[np.ndarray, np.ndarray]:
    X, y = binary_table
    return X[["lab0", "a", "lab1", "b", "c"]].to_numpy(), y.to_numpy()


STUDENTS = ["catboost", "lightgbm", "xgboost", "mlp", "logreg", "random_forest", "extra_trees", "hist_gb"]


@pytest.mark.parametrize("student", STUDENTS)
def test_numpy_input_with_integer_columns_for_every_student(binary_table, student: str) -> None:
    """Student columns that are not the first ones (1, 3, 4): positions of fit's array, for every family."""
    arr, y = _numpy_table(binary_table)
    params = {"n_estimators": 20} if student in ("random_forest", "extra_trees") else FAST.get(student)
    model = DistilledClassifier(teacher="lightgbm", student=student, student_columns=[1, 3, 4], n_splits=3,
                                teacher_params=FAST["lightgbm"], student_params=params).fit(arr, y)
    assert model.n_features_in_ == 5 and not hasattr(model, "feature_names_in_")
    full = model.predict_proba(arr)  # fit's layout
    alone = model.predict_proba(arr[:, [1, 3, 4]])  # the student columns alone
    np.testing.assert_allclose(full, alone, rtol=0, atol=1e-12)
    assert full.shape == (len(arr), 2) and (model.predict(arr) == model.classes_[full.argmax(1)]).mean() > 0.9
    with pytest.raises(DataError, match="X has 4 features, but DistilledClassifier is expecting 5 features"):
        model.predict(arr[:, :4])


def test_dataframe_fit_then_array_predict(binary_table) -> None:
    X, y = binary_table
    X = X.drop(columns="kind")
    model = DistilledClassifier(teacher="lightgbm", student="lightgbm", student_columns=["a", "b", "c"], n_splits=3,
                                teacher_params=FAST["lightgbm"], student_params=FAST["lightgbm"]).fit(X, y)
    assert list(model.feature_names_in_) == list(X.columns) and model.n_features_in_ == X.shape[1]
    expected = model.predict_proba(X[["c", "a", "b"]])  # a frame: columns by name, any order
    np.testing.assert_allclose(model.predict_proba(X.to_numpy()), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(model.predict_proba(X[["a", "b", "c"]].to_numpy()), expected, rtol=0, atol=1e-12)


def test_not_fitted_error_before_fit() -> None:
    model = DistilledClassifier()
    for method in (model.predict, model.predict_proba, model.teacher_predict_proba):
        with pytest.raises(NotFittedError):
            method(np.zeros((2, 3)))


@pytest.mark.parametrize(("teacher", "student"), [("catboost", "lightgbm"), ("xgboost", "mlp"),
                                                  ("lightgbm", "logreg"), ("lightgbm", "hist_gb")])
def test_pickle_and_joblib_after_fit(binary_table, fast, tmp_path, teacher: str, student: str) -> None:
    X, y = binary_table
    model = fast(teacher, student).fit(X, y)
    expected = model.predict_proba(X)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(again.predict_proba(X), expected, rtol=0, atol=1e-12)
    joblib.dump(model, tmp_path / "model.joblib")
    loaded = joblib.load(tmp_path / "model.joblib")
    np.testing.assert_allclose(loaded.predict_proba(X), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(loaded.teacher_predict_proba(X), model.teacher_predict_proba(X), rtol=0, atol=1e-12)


def test_random_state_seeds_the_folds_and_seed_is_deprecated(binary_table, fast) -> None:
    X, y = binary_table
    a = fast("lightgbm", "lightgbm", random_state=3).fit(X, y)
    b = fast("lightgbm", "lightgbm", random_state=3).fit(X, y)
    c = fast("lightgbm", "lightgbm", random_state=4).fit(X, y)
    np.testing.assert_array_equal(a.student_oof_, b.student_oof_)
    assert not np.array_equal(a.student_folds_[0][1], c.student_folds_[0][1])
    with pytest.warns(DeprecationWarning, match="random_state"):
        old = fast("lightgbm", "lightgbm", seed=3).fit(X, y)
    np.testing.assert_array_equal(old.student_oof_, a.student_oof_)
    state = np.random.RandomState(0)
    assert fast("lightgbm", "lightgbm", random_state=state).fit(X, y).student_oof_.shape == (len(X), 2)


@pytest.mark.parametrize(("family", "key"), [("catboost", "thread_count"), ("lightgbm", "n_jobs"),
                                             ("xgboost", "n_jobs"), ("mlp", "n_threads"),
                                             ("random_forest", "n_jobs")])
def test_n_jobs_sets_the_thread_count(binary_table, family: str, key: str) -> None:
    X, y = binary_table
    params = {"n_estimators": 10} if family == "random_forest" else FAST.get(family) or {}

    def thread_count(**kw: object) -> int:
        model = DistilledClassifier(teacher="lightgbm", student=family, alpha=1.0, n_splits=2,
                                    **{"student_params": params, **kw}).fit(X, y)
        return model.student_models_[0].models[0].get_params()[key]

    assert thread_count(n_jobs=2) == 2
    assert thread_count(n_jobs=-1) == joblib.cpu_count()
    assert thread_count() != 3  # the family's default without n_jobs
    assert thread_count(n_jobs=2, student_params={**params, key: 3}) == 3  # the user's own setting wins
