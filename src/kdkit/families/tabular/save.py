"""Write a fitted :class:`DistilledClassifier` to a directory, boosted models in their native formats.

CatBoost -> ``.cbm``, LightGBM -> text model ``.txt``, XGBoost -> ``.json``, the torch MLP -> ``.safetensors``
plus its parameters in ``.json``. Scikit-learn estimators and the fitted encoders/imputers of the
``ordinal``/``dense`` preprocessing only pickle: they are written with joblib (``.joblib``) and must only be
loaded from directories you wrote yourself (unpickling runs code). ``manifest.json`` lists every file with the
columns, classes, student mode and decision threshold needed to use them; :mod:`kdkit.families.tabular.load` reads it
back (the ``ordinal`` encoders are also written as plain JSON categories, so boosted students load without
joblib).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from safetensors.torch import save_file

from kdkit.families.tabular.lgbm_soft import LGBMSoftLabelClassifier
from kdkit.families.tabular.torch_mlp import TorchMLPClassifier

MANIFEST = "manifest.json"  # every file of a saved model, with what loading it needs


def _module(est: Any) -> str:
    return type(est).__module__.split(".")[0]


def _save_catboost(est: Any, stem: str) -> str:
    est.save_model(stem + ".cbm")
    return stem + ".cbm"


def _save_lightgbm(est: Any, stem: str) -> str:
    est.booster_.save_model(stem + ".txt")
    return stem + ".txt"


def _save_xgboost(est: Any, stem: str) -> str:
    est.save_model(stem + ".json")
    return stem + ".json"


def _save_mlp(est: TorchMLPClassifier, stem: str) -> str:
    state = {k: v.detach().contiguous() for k, v in est.model_.state_dict().items()}
    save_file(state, stem + ".safetensors")
    meta = {"params": est.get_params(), "classes": np.asarray(est.classes_).tolist(),
            "n_features_in": int(est.n_features_in_)}
    Path(stem + ".json").write_text(json.dumps(meta, indent=2, default=list))
    return stem + ".safetensors"


def _save_joblib(est: Any, stem: str) -> str:
    joblib.dump(est, stem + ".joblib")
    return stem + ".joblib"


SAVERS: list[tuple[Callable[[Any], bool], Callable[[Any, str], str]]] = [
    (lambda e: _module(e) == "catboost", _save_catboost),
    (lambda e: _module(e) == "lightgbm" or isinstance(e, LGBMSoftLabelClassifier), _save_lightgbm),
    (lambda e: _module(e) == "xgboost", _save_xgboost),
    (lambda e: isinstance(e, TorchMLPClassifier), _save_mlp),
    (lambda e: True, _save_joblib),
]


def save_estimator(est: Any, stem: Path | str) -> str:
    """Save one fitted estimator next to ``stem`` (extension chosen by library); returns the file name."""
    saver = next(save for match, save in SAVERS if match(est))
    return Path(saver(est, str(stem))).name


def _classes(est: Any) -> list | None:
    try:
        classes = est.classes_
    except Exception:  # regressors have none; some libraries raise instead of AttributeError
        return None
    return None if classes is None else np.asarray(classes).tolist()


def _save_learner(learner: Any, directory: Path, name: str) -> dict:
    entry: dict[str, Any] = {"family": learner.family.name, "mode": learner.mode,
                             "preprocessing": learner.prep.kind, "columns": list(map(str, learner.columns)),
                             "categorical": list(map(str, learner.prep.cat_)), "models": [],
                             "model_types": [f"{_module(est)}.{type(est).__name__}" for est in learner.models],
                             "model_classes": [_classes(est) for est in learner.models]}
    if learner.prep.kind in ("ordinal", "dense"):
        entry["preprocessor"] = save_estimator(learner.prep, directory / f"{name}_prep")
    if learner.prep.kind == "ordinal":  # plain JSON too, so boosted students load without unpickling
        cats = learner.prep.ct_.named_transformers_["cat"].categories_ if learner.prep.cat_ else []
        pairs = zip(learner.prep.cat_, cats, strict=True)
        entry["ordinal_categories"] = {str(c): np.asarray(v).tolist() for c, v in pairs}
    for i, est in enumerate(learner.models):
        entry["models"].append(save_estimator(est, directory / f"{name}_{i}"))
    return entry


def save_distiller(model: Any, directory: Path | str) -> Path:
    """Write every fold model of a fitted DistilledClassifier and a manifest; returns the manifest path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {
        "classes": np.asarray(model.classes_).tolist(),
        "teacher_columns": list(map(str, model.teacher_columns_)),
        "student_columns": list(map(str, model.student_columns_)),
        "categorical_columns": list(map(str, model.categorical_columns_)),
        "categories": {str(c): values for c, values in (getattr(model, "categories_", None) or {}).items()},
        # fit's columns, in order: predict reads an array of this width as fit's layout (see
        # kdkit.families.tabular.inputs)
        "columns_in": [str(c) for c in getattr(model, "columns_in_", [])] or None,
        "student_mode": model.student_mode_,
        "alpha": float(model.alpha),
        "threshold": model.threshold_,
        "predict": "mean over student folds of predict_proba; binary label = P(classes[1]) >= threshold",
        "teacher_folds": [_save_learner(m, directory, f"teacher_fold{k}") for k, m in enumerate(model.teacher_models_)],
        "student_folds": [_save_learner(m, directory, f"student_fold{k}") for k, m in enumerate(model.student_models_)],
    }
    path = directory / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, default=str))
    return path
