"""A `kdkit tabular fit` run honours the torch runs' run-directory contract: config.yaml, results.json (same
schema, kdkit.measure.metrics numbers) and predictions.npz, so that `kdkit report` and `kdkit compare` read it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from kdkit.cli import main
from kdkit.families.tabular.cli import app
from kdkit.measure import metrics
from kdkit.report.rundir import load_run
from kdkit.run.rundir import CONFIG, RESULTS_FORMAT, ROLES, TRAINING_OUTPUTS

runner = CliRunner()
FAST_ARGS = ["--n-splits", "3", "--teacher-params", '{"iterations": 30}', "--student-params", '{"n_estimators": 30}']


def tabular_run(table: tuple[pd.DataFrame, pd.Series], out: Path, seed: int) -> Path:
    """A tiny `kdkit tabular fit` run (the default CatBoost teacher and LightGBM student) into `out`."""
    X, y = table
    train = out.parent / "train.csv"
    if not train.exists():
        X.assign(Y_LABEL=y).to_csv(train, index=False)
    result = runner.invoke(app, ["fit", "--train", str(train), "--target", "Y_LABEL", "--student-columns",
                                 "a,b,c,kind", "--seed", str(seed), "--run-dir", str(out), *FAST_ARGS])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    from conftest import privileged_table

    root = tmp_path_factory.mktemp("tabular_runs")
    table = privileged_table(n=180, n_classes=3)
    return [tabular_run(table, root / f"seed{seed}", seed) for seed in (0, 1)]


def test_the_contract_files_with_the_torch_schema(runs) -> None:
    run = runs[0]
    for name in (CONFIG, *TRAINING_OUTPUTS.values()):
        assert (run / name).is_file(), name
    assert not list(run.glob(".*.tmp")) and not (run / "metrics.json").exists() and not (run / "config.json").exists()
    results = json.loads((run / TRAINING_OUTPUTS["results"]).read_text())
    assert results["format"] == RESULTS_FORMAT and results["data"]["num_classes"] == 3
    assert [r["role"] for r in results["rows"]] == list(ROLES)
    quality = {"accuracy", "macro_f1", "nll", "ece"}
    fidelity = {"agreement", "predictive_kl"}
    rows = {r["role"]: r for r in results["rows"]}
    assert quality <= set(rows["teacher"]) and not fidelity & set(rows["teacher"])
    assert all(quality | fidelity | {"size_bytes", "latency_ms", "throughput", "speedup"} <= set(rows[r])
               for r in ("student_alone", "student_kd"))
    assert results["verdict"]["kind"] in ("gain", "loss", "no measurable difference")
    with np.load(run / TRAINING_OUTPUTS["predictions"]) as npz:
        preds = dict(npz)
    labels = preds["test_labels"]  # the 20% held out (stratified), never seen by a model
    assert len(labels) == 36 and set(np.unique(labels)) == {0, 1, 2}
    assert len(preds["train_labels"]) == len(preds["oof_labels"]) == 144
    assert results["data"]["n_test"] == 36 and results["data"]["n_train"] == 144
    for role in ROLES:  # the numbers are kdkit.measure.metrics' on the saved predictions
        assert rows[role]["accuracy"] == pytest.approx(metrics.accuracy(preds[f"test_{role}"], labels))
        assert rows[role]["ece"] == pytest.approx(metrics.ece(preds[f"test_{role}"], labels))
    kd = rows["student_kd"]
    assert kd["predictive_kl"] == pytest.approx(metrics.predictive_kl(preds["test_teacher"], preds["test_student_kd"]))
    assert kd["agreement"] == pytest.approx(metrics.agreement(preds["test_student_kd"], preds["test_teacher"]))
    config = yaml.safe_load((run / CONFIG).read_text())
    assert config["teacher"]["name"] == "catboost" and config["student"]["name"] == "lightgbm"
    assert config["seed"] == 0 and config["output_dir"] == str(run)


def test_predictions_are_held_out_then_out_of_fold_probabilities(runs) -> None:
    """test_* are the saved models' probabilities (as logits) on the rows holdout.csv names, train_* on the others,
    and oof_* the fits' out-of-fold probabilities on those others."""
    from kdkit.families.tabular.load import load_distiller

    run = runs[0]
    with np.load(run / TRAINING_OUTPUTS["predictions"]) as npz:
        preds = dict(npz)
    for role in ROLES:
        proba = metrics.softmax(preds[f"test_{role}"])
        assert np.allclose(proba.sum(1), 1.0) and proba.shape == (36, 3)
        assert metrics.softmax(preds[f"oof_{role}"]).shape == (144, 3)
    X = pd.read_csv(run.parent / "train.csv").drop(columns="Y_LABEL")
    held = pd.read_csv(run / "holdout.csv")["line"].to_numpy() - 2  # file line -> row (line 1 is the header)
    fit = np.setdiff1d(np.arange(len(X)), held)
    model = load_distiller(run)
    np.testing.assert_allclose(metrics.softmax(preds["test_student_kd"]), model.predict_proba(X.iloc[held]),
                               atol=1e-9)
    np.testing.assert_allclose(metrics.softmax(preds["train_student_kd"]), model.predict_proba(X.iloc[fit]),
                               atol=1e-9)
    assert not np.allclose(preds["oof_student_kd"], preds["train_student_kd"])  # out of fold is not in-sample


def test_kdkit_report_reads_a_tabular_run(runs) -> None:
    run = runs[0]
    data = load_run(run)
    assert data.train is not None and any("out-of-fold" in note for note in data.notes)
    with pytest.raises(SystemExit) as done:
        main(["report", str(run)])
    assert done.value.code == 0
    page = (run / "report.html").read_text()
    assert "distilled student" in page and "out-of-fold" in page and "held-out rows" in page and "<img" in page


def test_kdkit_diagnose_reads_a_tabular_run(runs, capsys) -> None:
    """A tabular run's signals come from its fitting rows (the held-out rows give the verdict): the teacher's
    out-of-fold probabilities are what the student is taught, out-of-fold predictions the held-out side; the four
    lab columns only the teacher sees make the first rule."""
    from kdkit.diagnosis import Signals, diagnose

    run = runs[0]
    results = json.loads((run / TRAINING_OUTPUTS["results"]).read_text())
    s = results["diagnosis"]["signals"]
    assert s["family"] == "tabular" and s["held_out"] == "out-of-fold rows" and s["teacher_only_inputs"] == 4
    assert s["n_train"] == s["n_held_out"] == 144 and s["capacity_ratio"] is None
    with np.load(run / TRAINING_OUTPUTS["predictions"]) as npz:
        preds = dict(npz)
    taught = metrics.softmax(preds["oof_teacher"]).max(1).mean()
    assert s["teacher_confidence_train"] == pytest.approx(taught) == s["teacher_confidence_held_out"]
    assert s["alone_accuracy_held_out"] == pytest.approx(metrics.accuracy(preds["oof_student_alone"],
                                                                           preds["oof_labels"]))
    assert s["alone_accuracy_train"] == pytest.approx(metrics.accuracy(preds["train_student_alone"],
                                                                        preds["train_labels"]))
    assert diagnose(Signals.from_dict(s)).findings[0].rule == "privileged_columns"
    with pytest.raises(SystemExit) as done:
        main(["diagnose", str(run)])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "columns only the teacher sees" in out and "[privileged_columns, predicts no measurable difference]" in out


def test_kdkit_compare_pools_the_seeds_of_tabular_runs(runs, tmp_path) -> None:
    with pytest.raises(SystemExit) as done:
        main(["compare", *map(str, runs), "--output-dir", str(tmp_path / "cmp")])
    assert done.value.code == 0
    page = next((tmp_path / "cmp").glob("*.md")).read_text()
    assert "2 runs in 1 settings" in page  # config.yaml differs only by seed and output_dir
