"""Read a directory written by :func:`kdkit.families.tabular.save.save_distiller` back into a fitted
:class:`DistilledClassifier` that predicts new rows exactly as the original did.

Boosted models come back from their native files (CatBoost ``.cbm``, LightGBM ``.txt``, XGBoost ``.json``), the
torch MLP from ``.safetensors`` plus its JSON parameters, and ``ordinal`` encoders from the JSON categories in
the manifest. Scikit-learn models and ``dense`` preprocessors exist only as joblib pickles; unpickling can run
arbitrary code, so they are read only with ``trust_joblib=True``.

:func:`load_role` reads one model of a ``kdkit tabular fit`` run: the distilled student (``models/``), the student
alone (``models/student_alone/``) or the teacher (the teacher folds of ``models/``), each the mean of its fold models
as a classifier with the scikit-learn API; ``kdkit.load(run_dir, role)`` gives the same.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kdkit.errors import ConfigError, RunDirError
from kdkit.families.tabular.estimator import DistilledClassifier
from kdkit.families.tabular.learners import MODES, Learner
from kdkit.families.tabular.lgbm_soft import softmax
from kdkit.families.tabular.models import Family
from kdkit.families.tabular.save import MANIFEST
from kdkit.families.tabular.torch_mlp import TorchMLPClassifier, _mlp
from kdkit.run.rundir import MODELS, ROLES, RunDir

MANIFEST_KEYS = ("classes", "student_columns", "student_mode", "student_folds")
FOLD_KEYS = ("family", "mode", "preprocessing", "columns", "categorical", "models")


class OrdinalCodes:
    """The fitted ``ordinal`` ColumnTransformer rebuilt from its categories: category -> its index (unknown ->
    NaN) for the categorical columns, then the numeric columns unchanged, as float64."""

    def __init__(self, categories: dict[str, list], numeric: list) -> None:
        self.categories, self.numeric = categories, numeric

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        parts = [frame[c].map({v: float(i) for i, v in enumerate(cats)}).astype(np.float64).to_numpy()
                 for c, cats in self.categories.items()]
        parts += [frame[c].to_numpy(dtype=np.float64) for c in self.numeric]
        return np.column_stack(parts) if parts else np.empty((len(frame), 0))


class _Classifier:
    """A natively loaded classifier with the class codes it was trained on."""

    def __init__(self, proba: Any, classes: np.ndarray) -> None:
        self._proba, self.classes_ = proba, classes

    def predict_proba(self, X: Any) -> np.ndarray:
        return self._proba(X)


class _Regressor:
    def __init__(self, predict: Any) -> None:
        self._predict = predict

    def predict(self, X: Any) -> np.ndarray:
        return self._predict(X)


class _LightGBMProba:
    """A loaded LightGBM booster's class probabilities (a class, not a closure: a loaded model pickles)."""

    def __init__(self, booster: Any) -> None:
        self.booster = booster

    def __call__(self, X: Any) -> np.ndarray:
        p = np.asarray(self.booster.predict(X), dtype=np.float64)
        return np.column_stack([1.0 - p, p]) if p.ndim == 1 else p


class _LightGBMSoftmax:
    """A loaded booster of LGBMSoftLabelClassifier (a custom objective): softmax of its raw scores."""

    def __init__(self, booster: Any) -> None:
        self.booster = booster

    def __call__(self, X: Any) -> np.ndarray:
        return softmax(np.asarray(self.booster.predict(X, raw_score=True), dtype=np.float64))


def _guess_type(entry: dict) -> str:
    """Older manifests lack ``model_types``: infer classifier/regressor from the student mode and family."""
    lib = {"catboost": "catboost", "lightgbm": "lightgbm", "xgboost": "xgboost"}.get(entry["family"], "")
    mode = entry["mode"]
    is_clf = mode in ("hard", "expand") or (mode == "soft" and lib == "catboost")
    prefix = {"catboost": "catboost.CatBoost", "lightgbm": "lightgbm.LGBM", "xgboost": "xgboost.XGB"}.get(lib, "")
    return prefix + ("Classifier" if is_clf else "Regressor")


def _load_native(path: Path, type_name: str, classes: np.ndarray) -> Any:
    try:
        return _load_native_unchecked(path, type_name, classes)
    except Exception as err:  # noqa: BLE001 - each library has its own error type for a damaged model file
        if isinstance(err, (ImportError, RunDirError, ConfigError)):
            raise
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise RunDirError(f"{path}: cannot load this model file ({first}); it is damaged: copy the run's {MODELS}/ "
                          "folder again or rerun 'kdkit tabular fit'") from None


def _load_native_unchecked(path: Path, type_name: str, classes: np.ndarray) -> Any:
    library, _, cls_name = type_name.partition(".")
    is_clf = "Classifier" in cls_name
    if cls_name == "LGBMSoftLabelClassifier":
        import lightgbm

        return _Classifier(_LightGBMSoftmax(lightgbm.Booster(model_file=str(path))), classes)
    if library == "lightgbm":
        import lightgbm

        booster = lightgbm.Booster(model_file=str(path))
        return _Classifier(_LightGBMProba(booster), classes) if is_clf else _Regressor(booster.predict)
    if library == "catboost":
        import catboost

        model = getattr(catboost, "CatBoostClassifier" if is_clf else "CatBoostRegressor")()
    else:
        import xgboost

        model = getattr(xgboost, "XGBClassifier" if is_clf else "XGBRegressor")()
    model.load_model(str(path))
    return _Classifier(model.predict_proba, classes) if is_clf else _Regressor(model.predict)


def _load_mlp(path: Path) -> TorchMLPClassifier:
    from safetensors.torch import load_file

    meta_path = path.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text())
        params, classes, n_in = meta["params"], meta["classes"], int(meta["n_features_in"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise RunDirError(f"{meta_path}: missing or malformed MLP parameters (params, classes, n_features_in)"
                          ) from None
    params["hidden"] = tuple(params.get("hidden", ()))
    mlp = TorchMLPClassifier(**params)
    mlp.classes_, mlp.n_features_in_ = np.asarray(classes), n_in
    mlp.model_ = _mlp(n_in, mlp.hidden, len(classes), mlp.dropout)
    try:
        mlp.model_.load_state_dict(load_file(str(path)))
    except Exception as err:  # noqa: BLE001 - safetensors' header errors, or weights of another shape
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise RunDirError(f"{path}: cannot load the MLP weights ({first}); the file is damaged: copy the run's "
                          f"{MODELS}/ folder again or rerun 'kdkit tabular fit'") from None
    mlp.model_.eval()
    return mlp


def _load_joblib(path: Path, trust: bool) -> Any:
    if not trust:
        raise ConfigError(f"{path} is a joblib pickle (loading it can run code); pass trust_joblib=True (CLI: "
                          "--trust) only for run directories you made yourself")
    import joblib

    return joblib.load(path)


def _file(directory: Path, name: Any) -> Path:
    path = directory / str(name)
    if not path.is_file():
        raise RunDirError(f"{path}: listed in {MANIFEST} but missing; copy the whole {MODELS}/ folder")
    return path


def _load_model(directory: Path, name: str, type_name: str, classes: np.ndarray, trust: bool) -> Any:
    path = _file(directory, name)
    if path.suffix in (".cbm", ".txt") or (path.suffix == ".json" and type_name.startswith("xgboost.")):
        return _load_native(path, type_name, classes)
    if path.suffix == ".safetensors":
        return _load_mlp(path)
    if path.suffix == ".joblib":
        return _load_joblib(path, trust)
    raise RunDirError(f"{path}: unknown model file type '{path.suffix}'")


def _not_refittable(params: dict, seed: int, cat: list[int]) -> Any:
    raise ConfigError("a loaded fold model cannot be refitted; fit a new DistilledClassifier instead")


def _load_learner(directory: Path, entry: Any, n_classes: int, trust: bool, where: str) -> Learner:
    if not isinstance(entry, dict) or any(k not in entry for k in FOLD_KEYS):
        missing = [k for k in FOLD_KEYS if not isinstance(entry, dict) or k not in entry]
        raise RunDirError(f"{directory / MANIFEST}: {where} lacks {', '.join(missing)}")
    if entry["mode"] not in MODES:
        raise RunDirError(f"{directory / MANIFEST}: {where} has unknown mode {entry['mode']!r}")
    names = list(entry["models"])
    if not names:
        raise RunDirError(f"{directory / MANIFEST}: {where} lists no model files")
    types = entry.get("model_types") or [_guess_type(entry)] * len(names)
    all_classes = entry.get("model_classes") or [None] * len(names)
    if len(types) != len(names) or len(all_classes) != len(names):
        raise RunDirError(f"{directory / MANIFEST}: {where} has {len(names)} models but "
                          f"{len(types)} model_types and {len(all_classes)} model_classes")
    kd = any(str(n).endswith(".safetensors") for n in names)
    family = Family(entry["family"], _not_refittable, soft="kd" if kd else "binary_prob", prep=entry["preprocessing"])
    cls = MODES[entry["mode"]]
    learner = cls(family, {}, 0, list(entry["columns"]), list(entry["categorical"]), n_classes,
                  entry["preprocessing"])
    kind, prep = entry["preprocessing"], learner.prep
    prep.cat_ = [c for c in prep.columns if c in set(prep.categorical)]  # all the state 'catboost'/'none' have
    prep.num_ = [c for c in prep.columns if c not in set(prep.cat_)]
    if kind == "ordinal" and "ordinal_categories" in entry:
        prep.ct_ = OrdinalCodes({c: entry["ordinal_categories"][c] for c in prep.cat_}, prep.num_)
    elif kind in ("ordinal", "dense"):
        if "preprocessor" not in entry:
            raise RunDirError(f"{directory / MANIFEST}: {where} lacks its preprocessor file")
        learner.prep = _load_joblib(_file(directory, entry["preprocessor"]), trust)
    models = []
    for name, type_name, classes in zip(names, types, all_classes, strict=True):
        codes = np.arange(n_classes) if classes is None else np.asarray(classes, dtype=int)
        models.append(_load_model(directory, name, str(type_name), codes, trust))
    learner.models = models
    return learner


def _manifest(directory: Path) -> tuple[Path, dict]:
    if not (directory / MANIFEST).is_file() and (RunDir(directory).models / MANIFEST).is_file():
        directory = RunDir(directory).models  # a run directory of 'kdkit tabular fit'
    path = directory / MANIFEST
    if not path.is_file():
        raise RunDirError(f"{path}: not found; give a run directory of 'kdkit tabular fit' or its {MODELS}/ folder")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunDirError(f"{path}: cannot read as JSON ({type(err).__name__}); the file is damaged") from None
    if not isinstance(manifest, dict):
        raise RunDirError(f"{path}: expected a JSON object written by kdkit")
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        raise RunDirError(f"{path}: missing {', '.join(missing)}; not a manifest written by kdkit")
    if not manifest["student_folds"]:
        raise RunDirError(f"{path}: lists no student folds")
    return directory, manifest


def load_distiller(directory: Path | str, *, trust_joblib: bool = False,
                   teachers: bool = False) -> DistilledClassifier:
    """A fitted DistilledClassifier from ``directory`` (the ``models/`` folder or the run directory above it).

    ``predict_proba`` / ``predict`` match the saved model's; the teacher folds are restored only with
    ``teachers=True``. ``trust_joblib`` allows unpickling scikit-learn models and ``dense`` preprocessors:
    pass it only for directories you wrote yourself.
    """
    directory, manifest = _manifest(Path(directory))
    classes = np.asarray(manifest["classes"])
    k = len(classes)
    folds = [_load_learner(directory, e, k, trust_joblib, f"student fold {i}")
             for i, e in enumerate(manifest["student_folds"])]
    teacher_folds = manifest.get("teacher_folds") or []
    model = DistilledClassifier(
        teacher=teacher_folds[0]["family"] if teacher_folds else "catboost",
        student=manifest["student_folds"][0]["family"], student_columns=list(manifest["student_columns"]),
        teacher_columns=manifest.get("teacher_columns"), alpha=float(manifest.get("alpha", 0.0)),
        student_mode=manifest["student_mode"], n_splits=max(len(folds), 2),
        tune_threshold=manifest.get("threshold") is not None,
    )
    model.classes_ = classes
    model.student_columns_ = list(manifest["student_columns"])
    model.teacher_columns_ = list(manifest.get("teacher_columns") or [])
    model.categorical_columns_ = list(manifest.get("categorical_columns")
                                      or sorted({c for e in manifest["student_folds"] for c in e["categorical"]}))
    model.categories_ = manifest.get("categories")  # absent from older manifests: no check of unseen categories
    model.student_mode_ = manifest["student_mode"]
    if manifest.get("columns_in"):  # absent from older manifests: arrays must then hold the student columns alone
        model.columns_in_ = list(manifest["columns_in"])
        model.n_features_in_ = len(model.columns_in_)
    threshold = manifest.get("threshold")
    model.threshold_ = None if threshold is None else float(threshold)
    model.student_models_ = folds
    model.teacher_models_ = ([_load_learner(directory, e, k, trust_joblib, f"teacher fold {i}")
                              for i, e in enumerate(teacher_folds)] if teachers else [])
    return model


ALONE = "student_alone"  # the folder, under the run's models/, of the student trained on the labels alone


def load_role(run_dir: Path | str, role: str = "student_kd", *, trust_joblib: bool = False) -> DistilledClassifier:
    """One model of a ``kdkit tabular fit`` run, as a classifier whose predict_proba is the mean of its fold models
    (the teacher's on the teacher columns, a student's on the student columns)."""
    if role not in ROLES:
        raise ConfigError(f"unknown model '{role}'; choose one of: {', '.join(ROLES)}")
    models = RunDir(run_dir).models
    if role == "student_alone":
        if not (models / ALONE / MANIFEST).is_file():
            raise RunDirError(f"{models / ALONE} not found: this run was written before kdkit saved the student "
                              "alone's models; fit it again ('kdkit tabular fit ... --overwrite') to load that row")
        return load_distiller(models / ALONE, trust_joblib=trust_joblib)
    model = load_distiller(models, trust_joblib=trust_joblib, teachers=role == "teacher")
    if role == "teacher":
        if not model.teacher_models_:
            raise RunDirError(f"{models / 'manifest.json'} lists no teacher folds; fit the run again to load its "
                              "teacher")
        # predict_proba averages student_models_ on student_columns_: the teacher's folds and columns here
        model.student_models_, model.student_columns_, model.threshold_ = (model.teacher_models_,
                                                                           model.teacher_columns_, None)
    return model
