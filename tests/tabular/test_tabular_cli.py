"""`kdkit tabular fit` / `tune` end to end on small CSVs written here, and exit code 2 on bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hostile import assert_refused, cli
from typer.testing import CliRunner

from kdkit.families.tabular.cli import app

runner = CliRunner()


@pytest.fixture
def csvs(tmp_path: Path, binary_table) -> tuple[Path, Path]:
    X, y = binary_table
    frame = X.assign(ID=[f"r{i}" for i in range(len(X))], Y_LABEL=y)
    frame.iloc[:180].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[180:][["ID", "a", "b", "c", "kind"]].to_csv(tmp_path / "test.csv", index=False)
    return tmp_path / "train.csv", tmp_path / "test.csv"


FAST_ARGS = ["--n-splits", "3", "--teacher-params", '{"iterations": 30}', "--student-params", '{"n_estimators": 30}']


def test_fit_writes_table_predictions_and_native_models(csvs, tmp_path: Path) -> None:
    train, test = csvs
    run = tmp_path / "run"
    result = runner.invoke(app, ["fit", "--train", str(train), "--test", str(test), "--target", "Y_LABEL",
                                 "--id", "ID", "--run-dir", str(run), *FAST_ARGS])
    assert result.exit_code == 0, result.output
    for row in ("teacher catboost (8 cols)", "student alone lightgbm (4 cols)", "distilled lightgbm"):
        assert row in (run / "table.md").read_text()
    results = json.loads((run / "results.json").read_text())  # the torch runs' contract (was metrics.json)
    assert [r["role"] for r in results["rows"]] == ["teacher", "student_alone", "student_kd"]
    assert all(0 <= s["roc_auc"] <= 1 for s in results["scores"].values())
    preds = pd.read_csv(run / "predictions.csv")
    assert list(preds.columns) == ["ID", "probability", "label"] and len(preds) == 60
    assert preds["probability"].between(0, 1).all() and set(preds["label"]) <= {0, 1}
    manifest = json.loads((run / "models" / "manifest.json").read_text())
    assert manifest["student_columns"] == ["a", "b", "c", "kind"]
    assert (run / "models" / "teacher_fold0_0.cbm").exists() and (run / "models" / "student_fold2_0.txt").exists()
    config = yaml.safe_load((run / "config.yaml").read_text())  # was config.json
    assert config["distill"]["alpha"] == 0.0 and config["data"]["id_columns"] == ["ID"]


def test_tune_runs_in_the_tune_loop_and_fit_reuses_its_best_config(csvs, tmp_path: Path) -> None:
    """`kdkit tabular tune` writes what `kdkit tune` writes (RUN_DIR/tune/: study.db, trials.csv, best.yaml, the
    config with the best values), scores the best on the held-out rows, and `fit best.yaml` or `fit --from-tune`
    reuse it."""
    train, test = csvs
    run = tmp_path / "tune"
    args = ["--train", str(train), "--test", str(test), "--target", "Y_LABEL", "--id", "ID", "--n-splits", "3",
            "--n-jobs", "1",
            "--teacher-params", '{"n_estimators": 20}', "--student-params", '{"n_estimators": 20}']
    result = runner.invoke(app, ["tune", *args, "--teacher", "lightgbm", "--student", "lightgbm",
                                 "--n-trials", "3", "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    out = run / "tune"
    assert (out / "study.db").exists() and "kdkit tune: validation log_loss, 3 trials" in result.output
    assert len(list(csv.DictReader((out / "trials.csv").open()))) == 3
    assert "held-out verdict: " in result.output  # the best trial, fitted again, on rows the search never saw
    scored = yaml.safe_load((out / "held_out.yaml").read_text())
    assert scored["held_out"]["rows"] == 36 and scored["holdout"] == {"fraction": 0.2, "seed": 0, "test_file": False,
                                                                      "source": scored["held_out"]["source"]}
    assert set(scored["held_out"]["log_loss"]) == {"student_kd", "student_alone"}
    best = yaml.safe_load((out / "best.yaml").read_text())  # the config, with the best values at their paths
    assert 0 <= best["distill"]["alpha"] <= 0.9 and "num_leaves" in best["student"]["params"]
    assert best["student"]["params"]["n_estimators"] == 20 and "tune" not in best
    again = runner.invoke(app, ["tune", *args, "--teacher", "lightgbm", "--student", "lightgbm", "--n-trials", "1",
                                "--run-dir", str(run)])
    assert "4 trials: " in again.output  # the second call joined the stored study
    fitted = runner.invoke(app, ["fit", *args, "--teacher", "lightgbm", "--from-tune", str(out / "best.yaml"),
                                 "--run-dir", str(tmp_path / "fit")])
    assert fitted.exit_code == 0, fitted.output
    from_config = runner.invoke(app, ["fit", str(out / "best.yaml"), "--run-dir", str(tmp_path / "fit2")])
    assert from_config.exit_code == 0, from_config.output
    old = {"teacher_params": best["teacher"]["params"], "student_params": best["student"]["params"],
           "alpha": best["distill"]["alpha"], "holdout": scored["holdout"]}
    (tmp_path / "old.json").write_text(json.dumps(old))  # what kdkit tabular tune wrote before it wrote a config
    from_json = runner.invoke(app, ["fit", *args, "--teacher", "lightgbm", "--from-tune", str(tmp_path / "old.json"),
                                    "--run-dir", str(tmp_path / "fit3")])
    assert from_json.exit_code == 0, from_json.output
    scores = [json.loads((tmp_path / d / "results.json").read_text()) for d in ("fit", "fit2", "fit3")]
    quality = [[{k: r[k] for k in ("model", "accuracy", "nll")} for r in s["rows"]] for s in scores]
    assert quality[0] == quality[1] == quality[2]  # the same parameters, the same models (timings aside)
    for role in ("student_kd", "student_alone"):  # the search's held-out score is the one a fit of best.yaml reports
        assert scored["held_out"]["accuracy"][role] == pytest.approx(scores[1]["scores"][role]["accuracy"])
    moved = runner.invoke(app, ["fit", *args, "--teacher", "lightgbm", "--from-tune", str(out / "best.yaml"),
                                "--holdout", "0.3", "--run-dir", str(tmp_path / "fit4")])
    assert moved.exit_code == 2 and "rows the search chose on" in moved.output
    # the best config itself, its held-out rows changed by a flag or by --set, is refused the same way
    moved = runner.invoke(app, ["fit", str(out / "best.yaml"), "--holdout", "0.3", "--run-dir", str(tmp_path / "f5")])
    assert moved.exit_code == 2 and "rows the search chose on" in moved.output
    assert_refused(cli(["train", out / "best.yaml", "--set", "data.holdout.seed=3", "-o", tmp_path / "f6"]),
                   "rows the search chose on")
    assert not (tmp_path / "f5" / "results.json").exists() and not (tmp_path / "f6" / "results.json").exists()


def test_bad_input_exits_2_with_one_line(csvs, tmp_path: Path) -> None:
    train, test = csvs
    bad_test = tmp_path / "bad_test.csv"
    bad_test.write_text("ID,a,zz\nr1,1,2\n")
    frame = pd.read_csv(train)
    not_number = frame.astype({"b": object})
    not_number.loc[3, "b"] = "abc"
    not_number.to_csv(tmp_path / "not_number.csv", index=False)
    frame.assign(Y_LABEL=0).to_csv(tmp_path / "one_class.csv", index=False)
    frame.rename(columns={"b": "a"}).to_csv(tmp_path / "dupes.csv", index=False)
    (tmp_path / "empty.csv").write_text("")
    cases = [
        (["--target", "Y_LABEL", "--train", str(tmp_path / "empty.csv")], "file is empty"),
        (["--target", "Y_LABEL", "--train", str(tmp_path / "dupes.csv")], "duplicated column names a"),
        (["--target", "Y_LABEL", "--train", str(tmp_path / "one_class.csv")], "single class"),
        (["--target", "Y_LABEL", "--train", str(tmp_path / "not_number.csv")],
         "column 'b' is numeric but line 5 has the non-numeric value 'abc'"),
        (["--target", "NOPE"], "target column 'NOPE' not found"),
        (["--target", "Y_LABEL", "--test", str(bad_test)], "columns not in the train file: zz"),
        (["--target", "Y_LABEL", "--alpha", "2"], "--alpha: must be in [0, 1)"),
        (["--target", "Y_LABEL", "--student", "nosuch"], "unknown student 'nosuch'"),
        (["--target", "Y_LABEL", "--teacher-params", "{bad"], "not valid JSON"),
        (["--target", "Y_LABEL", "--n-jobs", "0"], "--n-jobs: must be a non-zero number of threads"),
    ]
    for extra, message in cases:
        result = runner.invoke(app, ["fit", "--train", str(train), "--test", str(test), "--id", "ID",
                                     "--run-dir", str(tmp_path / "r"), *extra])
        assert result.exit_code == 2, (extra, result.output)
        err = result.stderr if result.stderr_bytes is not None else result.output
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines == [lines[0]] and lines[0].startswith("error: ") and message in lines[0], lines


@pytest.mark.parametrize(("column", "values", "why"), [
    ("ID", lambda n: [f"r{i}" for i in range(n)], "named like an id"),
    ("customer_id", lambda n: np.random.default_rng(0).permutation(n), "named like an id"),
    ("row", lambda n: np.arange(1000, 1000 + n), "whole numbers, unique per row, in order"),
])
def test_likely_id_column_is_refused_until_named(binary_table, tmp_path: Path, column, values, why) -> None:
    """An id that becomes a feature leaks the row order; forgetting --id stops the command with one line."""
    X, y = binary_table
    frame = X.assign(**{column: values(len(X))}, Y_LABEL=y).sort_values("Y_LABEL")  # sorted by class: the trap
    frame[column] = values(len(X)) if column == "row" else frame[column]  # still increasing after the sort
    frame.to_csv(tmp_path / "train.csv", index=False)
    base = ["fit", "--train", str(tmp_path / "train.csv"), "--target", "Y_LABEL", "--student-columns", "a,b,c",
            *FAST_ARGS, "--n-splits", "2"]  # the last --n-splits counts: 2 folds, the claim is about columns
    refused = runner.invoke(app, [*base, "--run-dir", str(tmp_path / "r0")])
    assert refused.exit_code == 2, refused.output
    err = refused.stderr if refused.stderr_bytes is not None else refused.output
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and f"'{column}' ({why})" in lines[0] and f"--id {column}" in lines[0]
    assert f"--keep-column {column}" in lines[0]
    assert not (tmp_path / "r0" / "results.json").exists()
    for option, is_feature in (("--id", False), ("--keep-column", True)):
        run = tmp_path / option.strip("-")
        result = runner.invoke(app, [*base, option, column, "--run-dir", str(run)])
        assert result.exit_code == 0, result.output
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert (column in config["teacher"]["columns"]) is is_feature


def test_keep_column_must_name_a_feature(csvs, tmp_path: Path) -> None:
    train, test = csvs
    result = runner.invoke(app, ["fit", "--train", str(train), "--test", str(test), "--target", "Y_LABEL", "--id",
                                 "ID", "--keep-column", "nope", "--run-dir", str(tmp_path / "r"), *FAST_ARGS])
    assert result.exit_code == 2 and "--keep-column nope: not a feature column" in result.output


@pytest.mark.parametrize(("command", "extra", "message"), [
    ("fit", ["--teacher", "catbooost"], "unknown teacher 'catbooost'; did you mean 'catboost'?"),
    ("fit", ["--student-mode", "sofft"], "--student-mode: unknown student mode 'sofft'; did you mean 'soft'?"),
    ("fit", ["--from-tune", "nope.yaml"], "nope.yaml: file not found"),
    ("fit", ["--test", "absent.csv"], "absent.csv: file not found"),
    ("fit", ["--run-dir", "finished"], "holds a finished run; pass --overwrite"),
    ("tune", ["--student", "lightgmb"], "unknown student 'lightgmb'; did you mean 'lightgbm'?"),
])
def test_names_and_paths_are_checked_before_any_data_is_read(csvs, tmp_path: Path, monkeypatch, command, extra,
                                                             message) -> None:
    """A typo in a name or a path, or a run directory that is taken, stops the command before a CSV is read and
    before any progress line."""
    import kdkit.families.tabular.io

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("a CSV was read before the names and paths were checked")

    monkeypatch.setattr(kdkit.families.tabular.io, "read_table", no_reading)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "finished").mkdir()
    (tmp_path / "finished" / "results.json").write_text("{}")
    train, test = csvs
    args = ["--train", str(train), "--test", str(test), "--target", "Y_LABEL", "--id", "ID", "--run-dir", "r", *extra]
    result = runner.invoke(app, [command, *args])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""  # no progress line came first
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_a_search_stopped_before_its_held_out_scoring_still_guards_its_rows(csvs, tmp_path: Path, monkeypatch) -> None:
    """held_out.yaml names the held-out rows before the search starts: a best.yaml whose scoring never ran still
    refuses a fit that would hold out other rows."""
    import kdkit.families.tabular.tune as tabular_tune

    def stopped(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tabular_tune, "score_on_held_out", stopped)
    train, _ = csvs
    args = ["--train", str(train), "--target", "Y_LABEL", "--id", "ID", "--student-columns", "a,b,c,kind",
            "--n-splits", "3", "--n-jobs", "1",
            "--teacher-params", '{"n_estimators": 10}', "--student-params", '{"n_estimators": 10}']
    runner.invoke(app, ["tune", *args, "--teacher", "lightgbm", "--student", "lightgbm", "--n-trials", "2",
                        "--holdout", "0.2", "--run-dir", str(tmp_path / "tune")])
    out = tmp_path / "tune" / "tune"
    saved = yaml.safe_load((out / "held_out.yaml").read_text())
    assert (out / "best.yaml").is_file() and "held_out" not in saved
    assert (saved["holdout"]["fraction"], saved["holdout"]["seed"], saved["holdout"]["test_file"]) == (0.2, 0, False)
    moved = runner.invoke(app, ["fit", str(out / "best.yaml"), "--holdout", "0.3", "--run-dir", str(tmp_path / "f")])
    assert moved.exit_code == 2 and "rows the search chose on" in moved.output
    # a rerun of the search that would hold out other rows is refused: its trials were fitted on some of them
    again = runner.invoke(app, ["tune", *args, "--teacher", "lightgbm", "--student", "lightgbm", "--n-trials", "2",
                                "--holdout", "0.2", "--holdout-seed", "1", "--run-dir", str(tmp_path / "tune")])
    assert again.exit_code == 2 and "held-out rows" in again.output
    assert yaml.safe_load((out / "held_out.yaml").read_text())["holdout"]["seed"] == 0  # untouched
    # the same rows named through another spelling of the file's path: the search goes on
    monkeypatch.chdir(train.parent)
    relative = [train.name if a == str(train) else a for a in args]
    same = runner.invoke(app, ["tune", *relative, "--teacher", "lightgbm", "--student", "lightgbm", "--n-trials", "3",
                               "--holdout", "0.2", "--run-dir", str(tmp_path / "tune")])
    assert same.exit_code != 2 and "holds a search with" not in same.output, same.output
