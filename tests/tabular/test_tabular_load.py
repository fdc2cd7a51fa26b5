"""Saved run directories load back into a DistilledClassifier whose predictions equal the original's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from kdkit.errors import ConfigError, DataError, RunDirError
from kdkit.families.tabular.cli import app
from kdkit.families.tabular.load import load_distiller
from kdkit.families.tabular.save import save_distiller

runner = CliRunner()
STUDENT_COLS = ["a", "b", "c", "kind"]  # as in conftest.py


def _same(loaded, model, X: pd.DataFrame) -> None:
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_binary_lightgbm_round_trip_without_joblib(fast, binary_table, tmp_path: Path) -> None:
    X, y = binary_table
    model = fast("catboost", "lightgbm", tune_threshold=True).fit(X, y)
    save_distiller(model, tmp_path / "models")
    loaded = load_distiller(tmp_path, teachers=True)  # run dir above models/; ordinal codes come from JSON
    assert loaded.threshold_ == model.threshold_ and loaded.student_mode_ == model.student_mode_ == "soft"
    assert list(loaded.classes_) == list(model.classes_) and loaded.student_columns_ == STUDENT_COLS
    _same(loaded, model, X[STUDENT_COLS])
    np.testing.assert_allclose(loaded.teacher_predict_proba(X), model.teacher_predict_proba(X), rtol=0, atol=1e-12)


def test_multiclass_round_trip_with_string_labels(fast, table_factory, tmp_path: Path) -> None:
    X, y = table_factory(n=180, n_classes=3)
    labels = y.map({0: "low", 1: "mid", 2: "high"})
    model = fast("lightgbm", "xgboost", alpha=0.2).fit(X, labels)
    save_distiller(model, tmp_path)
    loaded = load_distiller(tmp_path)
    assert list(loaded.classes_) == ["high", "low", "mid"] and not loaded.teacher_models_
    _same(loaded, model, X[STUDENT_COLS].iloc[::-1])


def test_joblib_needs_trust(fast, binary_table, tmp_path: Path) -> None:
    X, y = binary_table
    model = fast("lightgbm", "mlp").fit(X, y)  # dense preprocessing: a pickled ColumnTransformer
    save_distiller(model, tmp_path)
    with pytest.raises(ConfigError, match=r"student_fold0_prep\.joblib.*trust_joblib=True"):
        load_distiller(tmp_path)
    _same(load_distiller(tmp_path, trust_joblib=True), model, X[STUDENT_COLS])


def test_missing_or_broken_manifest(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="manifest.json: not found"):
        load_distiller(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"classes": [0, 1]}))
    with pytest.raises(RunDirError, match="missing student_columns, student_mode, student_folds"):
        load_distiller(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(RunDirError, match="cannot read as JSON"):
        load_distiller(tmp_path)


def test_missing_model_file_and_column(fast, binary_table, tmp_path: Path) -> None:
    X, y = binary_table
    model = fast("catboost", "catboost", alpha=1.0).fit(X, y)
    save_distiller(model, tmp_path)
    loaded = load_distiller(tmp_path)
    _same(loaded, model, X[STUDENT_COLS])
    with pytest.raises(DataError, match="kind"):
        loaded.predict_proba(X[["a", "b", "c"]])
    (tmp_path / "student_fold1_0.cbm").unlink()
    with pytest.raises(RunDirError, match="student_fold1_0.cbm: listed in manifest.json but missing"):
        load_distiller(tmp_path)


def test_cli_fit_then_predict(binary_table, tmp_path: Path) -> None:
    X, y = binary_table
    frame = X.assign(ID=[f"r{i}" for i in range(len(X))], Y_LABEL=y)
    frame.iloc[:180].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[180:][["ID", *STUDENT_COLS]].to_csv(tmp_path / "test.csv", index=False)
    run = tmp_path / "run"
    fit = runner.invoke(app, ["fit", "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"),
                              "--target", "Y_LABEL", "--id", "ID", "--run-dir", str(run), "--n-splits", "3",
                              "--teacher-params", '{"iterations": 30}', "--student-params", '{"n_estimators": 30}'])
    assert fit.exit_code == 0, fit.output
    out = tmp_path / "new_preds.csv"
    pred = runner.invoke(app, ["predict", str(run), "--input", str(tmp_path / "test.csv"), "--id", "ID",
                               "--output", str(out)])
    assert pred.exit_code == 0, pred.output
    assert "warning" not in pred.stderr  # every category of the test file was seen in training
    pd.testing.assert_frame_equal(pd.read_csv(out), pd.read_csv(run / "predictions.csv"))

    odd = frame.iloc[180:][["ID", *STUDENT_COLS]].copy()
    odd.iloc[:3, odd.columns.get_loc("kind")] = ["castle", "astronaut", "castle"]
    odd.to_csv(tmp_path / "odd.csv", index=False)
    warned = runner.invoke(app, ["predict", str(run / "models"), "--input", str(tmp_path / "odd.csv"), "--id", "ID"])
    assert warned.exit_code == 0, warned.output
    assert (run / "predictions-odd.csv").is_file()  # given its models/ folder, beside the run: not inside models/
    lines = [line for line in warned.stderr.splitlines() if line.strip()]
    assert lines == ["warning: column 'kind': 3 row(s) hold 2 categories never seen in training: 'astronaut', "
                     "'castle'; the model learnt nothing about them and reads them as an unknown value"], lines

    frame.iloc[180:][["ID", "a", "c"]].to_csv(tmp_path / "short.csv", index=False)
    bad = runner.invoke(app, ["predict", str(run), "--input", str(tmp_path / "short.csv"), "--id", "ID"])
    assert bad.exit_code == 2 and "missing student column(s) b, kind" in bad.output
    assert len([line for line in bad.output.splitlines() if line.strip()]) == 1


@pytest.mark.parametrize(("teacher", "student"), [("catboost", "lightgbm"), ("lightgbm", "xgboost"),
                                                  ("lightgbm", "catboost"), ("lightgbm", "mlp")])
def test_a_loaded_model_pickles_like_a_fitted_one(fast, binary_table, tmp_path: Path, teacher, student) -> None:
    """A model read back from a run directory is as portable as the one that was fitted (no local closures)."""
    import pickle

    import joblib

    X, y = binary_table
    model = fast(teacher, student).fit(X, y)
    save_distiller(model, tmp_path)
    loaded = load_distiller(tmp_path, trust_joblib=True, teachers=True)
    _same(pickle.loads(pickle.dumps(loaded)), model, X[STUDENT_COLS])
    joblib.dump(loaded, tmp_path / "loaded.joblib")
    again = joblib.load(tmp_path / "loaded.joblib")
    _same(again, model, X[STUDENT_COLS])
    np.testing.assert_allclose(again.teacher_predict_proba(X), model.teacher_predict_proba(X), rtol=0, atol=1e-12)
