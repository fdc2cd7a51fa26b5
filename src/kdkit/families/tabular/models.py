"""Teachers and students by name: one :class:`Family` per library, in the ``FAMILIES`` registry.

A family knows how to build a hard-label classifier, how (if at all) it learns from probabilities, which
preprocessing it needs, and an Optuna search space. Any scikit-learn estimator can be used too: pass an
instance, or a dotted name such as ``sklearn.ensemble.ExtraTreesClassifier``.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sklearn.base import clone, is_classifier, is_regressor
from sklearn.utils.validation import has_fit_parameter

from kdkit.errors import ConfigError
from kdkit.families.tabular.torch_mlp import TorchMLPClassifier

Builder = Callable[[dict, int, list[int]], Any]  # (params, seed, cat_features) -> unfitted estimator
# parameter -> its range in `kdkit tabular tune` (kdkit.tune.config.SearchRange's keys: low/high, log, integer, or
# choices); the search draws each at teacher.params.<name> or student.params.<name>
Space = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Family:
    """How one model library takes part in distillation.

    ``soft`` says how it learns from probabilities: ``"binary_prob"`` (a loss accepting labels in [0, 1],
    binary only), ``"kd"`` (the torch MLP's KD loss, any number of classes) or ``None``; ``soft_multi`` builds a
    model that learns a probability matrix over more than two classes (``fit(X, targets)``), when it has one.
    ``threads`` names the constructor argument that sets the library's thread count (``DistilledClassifier(n_jobs=
    ...)`` fills it).
    """

    name: str
    classifier: Builder
    regressor: Builder | None = None
    soft_binary: Builder | None = None
    soft: str | None = None
    prep: str = "dense"
    weights: bool = True  # classifier accepts sample_weight (needed by the "expand" student mode)
    is_classifier: bool = True  # False for a user's regressor: it can only be a "regress" student
    space: Space | None = None
    threads: str | None = None
    soft_multi: Builder | None = None


@dataclass(frozen=True)
class LibraryBuilder:
    """Builds ``module.cls_name(**defaults, **params)`` with the fold's seed under ``seed_key``.

    A class rather than a closure: fold models keep their family, so a fitted DistilledClassifier pickles
    (and ``joblib.dump``s) only if every builder it references does.
    """

    module: str
    cls_name: str
    defaults: tuple[tuple[str, Any], ...] = ()
    seed_key: str | None = "random_state"
    cat_key: str | None = None  # CatBoost takes the categorical positions as ``cat_features``
    seed_if_accepted: bool = False  # scikit-learn: seed only the classes that have ``random_state``

    def __call__(self, params: dict, seed: int, cat: list[int]) -> Any:
        cls = getattr(importlib.import_module(self.module), self.cls_name)
        kw = {**dict(self.defaults), **params}
        if self.seed_key is not None and not (self.seed_if_accepted and self.seed_key not in cls().get_params()):
            kw.setdefault(self.seed_key, seed)
        if self.cat_key is not None:
            kw.setdefault(self.cat_key, cat or None)
        return cls(**kw)


def _merge(defaults: dict, params: dict) -> dict:
    return {**defaults, **params}


# --- CatBoost -------------------------------------------------------------------------------------------
_CB = {"iterations": 300, "learning_rate": 0.08, "depth": 6, "verbose": 0, "allow_writing_files": False,
       "thread_count": 2}


def _cb(cls_name: str, extra: dict | None = None) -> Builder:
    return LibraryBuilder("catboost", cls_name, tuple(_merge(_CB, extra or {}).items()), "random_seed",
                          "cat_features")


_CB_SPACE: Space = {
    "depth": {"low": 3, "high": 8, "integer": True},
    "learning_rate": {"low": 0.02, "high": 0.3, "log": True},
    "l2_leaf_reg": {"low": 1.0, "high": 10.0, "log": True},
}


# --- LightGBM -------------------------------------------------------------------------------------------
# One thread: LightGBM's and XGBoost's OpenMP workers spin-wait, and on a busy 2-core machine a 2-thread fit of
# a small table measured 20x slower than a 1-thread one. A fixed count also keeps results reproducible.
_LGB = {"n_estimators": 200, "learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 10, "verbose": -1,
        "n_jobs": 1, "deterministic": True, "force_row_wise": True}


def _lgb(cls_name: str, extra: dict | None = None) -> Builder:
    return LibraryBuilder("lightgbm", cls_name, tuple(_merge(_LGB, extra or {}).items()))


_LGB_SPACE: Space = {
    "num_leaves": {"low": 4, "high": 63, "log": True, "integer": True},
    "learning_rate": {"low": 0.01, "high": 0.3, "log": True},
    "min_child_samples": {"low": 5, "high": 50, "log": True, "integer": True},
    "colsample_bytree": {"low": 0.5, "high": 1.0},
}


# --- XGBoost --------------------------------------------------------------------------------------------
_XGB = {"n_estimators": 200, "learning_rate": 0.05, "max_depth": 5, "n_jobs": 1, "tree_method": "hist"}


def _xgb(cls_name: str, extra: dict | None = None) -> Builder:
    return LibraryBuilder("xgboost", cls_name, tuple(_merge(_XGB, extra or {}).items()))


_XGB_SPACE: Space = {
    "max_depth": {"low": 2, "high": 8, "integer": True},
    "learning_rate": {"low": 0.01, "high": 0.3, "log": True},
    "subsample": {"low": 0.6, "high": 1.0},
    "colsample_bytree": {"low": 0.5, "high": 1.0},
}


# --- torch MLP and scikit-learn -------------------------------------------------------------------------
def _mlp(params: dict, seed: int, cat: list[int]) -> Any:
    return TorchMLPClassifier(seed=seed, **params)


_MLP_SPACE: Space = {
    "hidden": {"choices": [[width, width // 2] for width in (32, 64, 128, 256)]},
    "lr": {"low": 3e-4, "high": 1e-2, "log": True},
    "dropout": {"low": 0.0, "high": 0.3},
    "temperature": {"low": 1.0, "high": 4.0},
}


def _sk(path: str, seeded: bool = True, **fixed: Any) -> Builder:
    module, cls_name = path.rsplit(".", 1)
    return LibraryBuilder(module, cls_name, tuple(fixed.items()), "random_state" if seeded else None,
                          seed_if_accepted=True)


FAMILIES: dict[str, Family] = {
    "catboost": Family(
        "catboost", _cb("CatBoostClassifier"), _cb("CatBoostRegressor", {"loss_function": "RMSE"}),
        _cb("CatBoostClassifier", {"loss_function": "CrossEntropy"}), "binary_prob", "catboost",
        space=_CB_SPACE, threads="thread_count",
    ),
    "lightgbm": Family(
        "lightgbm", _lgb("LGBMClassifier"), _lgb("LGBMRegressor"),
        _lgb("LGBMRegressor", {"objective": "cross_entropy"}), "binary_prob", "ordinal", space=_LGB_SPACE,
        threads="n_jobs", soft_multi=LibraryBuilder("kdkit.families.tabular.lgbm_soft", "LGBMSoftLabelClassifier",
                                                    tuple(_LGB.items())),
    ),
    "xgboost": Family(
        "xgboost", _xgb("XGBClassifier"), _xgb("XGBRegressor"),
        _xgb("XGBRegressor", {"objective": "binary:logistic"}), "binary_prob", "ordinal", space=_XGB_SPACE,
        threads="n_jobs",
    ),
    "mlp": Family("mlp", _mlp, soft="kd", prep="dense", space=_MLP_SPACE, threads="n_threads"),
    "logreg": Family(
        "logreg", _sk("sklearn.linear_model.LogisticRegression", seeded=False, max_iter=2000),
        _sk("sklearn.linear_model.Ridge", seeded=False),
    ),
    "random_forest": Family(
        "random_forest", _sk("sklearn.ensemble.RandomForestClassifier", n_estimators=300, n_jobs=2),
        _sk("sklearn.ensemble.RandomForestRegressor", n_estimators=300, n_jobs=2), threads="n_jobs",
    ),
    "extra_trees": Family(
        "extra_trees", _sk("sklearn.ensemble.ExtraTreesClassifier", n_estimators=300, n_jobs=2),
        _sk("sklearn.ensemble.ExtraTreesRegressor", n_estimators=300, n_jobs=2), threads="n_jobs",
    ),
    "hist_gb": Family(
        "hist_gb", _sk("sklearn.ensemble.HistGradientBoostingClassifier"),
        _sk("sklearn.ensemble.HistGradientBoostingRegressor"), prep="ordinal",
    ),
}


@dataclass(frozen=True)
class InstanceBuilder:
    """A user's estimator, cloned per fold with extra params applied by set_params; an unset seed gets the fold's.
    A class, not a closure, so that fitted models pickle (see LibraryBuilder)."""

    estimator: Any

    def __call__(self, params: dict, seed: int, cat: list[int]) -> Any:
        model = clone(self.estimator).set_params(**params)
        keys = model.get_params()
        for key in ("random_state", "random_seed", "seed"):
            if key in keys and keys[key] is None:
                model.set_params(**{key: seed})
        if cat and "cat_features" in keys:
            model.set_params(cat_features=cat)
        return model


def _from_instance(est: Any, name: str) -> Family:
    """Wrap a user's estimator (its own thread settings are kept: ``threads`` stays None)."""
    build = InstanceBuilder(est)
    module = type(est).__module__.split(".")[0]
    prep = {"catboost": "catboost", "lightgbm": "ordinal", "xgboost": "ordinal"}.get(module, "dense")
    if isinstance(est, TorchMLPClassifier):
        return Family(name, build, soft="kd", prep=prep)
    if is_regressor(est):
        return Family(name, build, regressor=build, prep=prep, weights=False, is_classifier=False)
    if not is_classifier(est) and not hasattr(est, "predict_proba"):
        raise ConfigError(f"{name} {type(est).__name__} is neither a classifier nor a regressor")
    return Family(name, build, prep=prep, weights=has_fit_parameter(est, "sample_weight"))


def _from_dotted(path: str, role: str) -> Family:
    if not path.startswith("sklearn."):
        close = difflib.get_close_matches(path.lower(), list(FAMILIES), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(
            f"unknown {role} '{path}'; {hint}use one of: {', '.join(FAMILIES)} or a dotted sklearn class name"
        )
    module, _, cls_name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), cls_name)
    except (ImportError, AttributeError):
        raise ConfigError(f"{role} '{path}' is not an importable scikit-learn class") from None
    return _from_instance(cls(), path)


def resolve(spec: str | Any, role: str) -> Family:
    """A family from a registry name, a dotted sklearn class name, or an estimator instance."""
    if isinstance(spec, str):
        key = spec.lower()
        return FAMILIES[key] if key in FAMILIES else _from_dotted(spec, role)
    if hasattr(spec, "fit"):
        return _from_instance(spec, type(spec).__name__)
    raise ConfigError(f"{role} must be a model name ({', '.join(FAMILIES)}) or an estimator, got {spec!r}")


def family_name(spec: str | Any) -> str:
    return spec if isinstance(spec, str) else type(spec).__name__
