"""`kdkit tabular fit` guards its run directory as `kdkit train` does (kdkit.run.guard): a finished run is refused
unless --overwrite, a directory in use by a live run is refused, a stale lock is taken over, and nothing is left
locked after a fit. Tabular fits cannot resume, so the refusals offer --overwrite only."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from typer.testing import CliRunner

from kdkit.families.tabular.cli import app

runner = CliRunner()
FAST_ARGS = ["--n-splits", "3", "--teacher-params", '{"iterations": 20}', "--student-params", '{"n_estimators": 20}']


def _fit(train: Path, run: Path, *extra: str):
    return runner.invoke(app, ["fit", "--train", str(train), "--target", "Y_LABEL", "--student-columns",
                               "a,b,c,kind", "--run-dir", str(run), *FAST_ARGS, *extra])


def _one_line(result) -> str:
    err = result.stderr if result.stderr_bytes is not None else result.output
    lines = [line for line in err.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    return lines[0]


def test_finished_run_is_refused_unless_overwrite(binary_table, tmp_path):
    X, y = binary_table
    train, run = tmp_path / "train.csv", tmp_path / "run"
    X.assign(Y_LABEL=y).to_csv(train, index=False)
    assert _fit(train, run).exit_code == 0
    results = (run / "results.json").read_text()
    line = _one_line(_fit(train, run, "--seed", "1"))
    assert "holds a finished run; pass --overwrite" in line
    assert (run / "results.json").read_text() == results  # the refused run wrote nothing
    (run / "notes.txt").write_text("mine")
    replaced = _fit(train, run, "--seed", "1", "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert json.loads((run / "results.json").read_text()) != json.loads(results)  # the new seed's numbers
    assert (run / "notes.txt").read_text() == "mine" and not (run / ".kdkit.lock").exists()


def test_locked_or_unfinished_directory_is_refused_before_fitting(binary_table, tmp_path):
    X, y = binary_table
    train, run = tmp_path / "train.csv", tmp_path / "run"
    X.assign(Y_LABEL=y).to_csv(train, index=False)
    run.mkdir()
    sleeper = subprocess.Popen(["sleep", "30"])
    lock = json.dumps({"pid": sleeper.pid, "host": os.uname().nodename})
    try:
        (run / ".kdkit.lock").write_text(lock)
        assert f"in use by another kdkit run (pid {sleeper.pid})" in _one_line(_fit(train, run))
    finally:
        sleeper.kill()
        sleeper.wait()
    (run / "models").mkdir()  # an interrupted fit's first files; the lock's owner is dead now: stale
    line = _one_line(_fit(train, run))
    assert "holds an unfinished run" in line and "--overwrite" in line and "--resume" not in line
    # refused before it touched the directory: no results, and the dead run's stale lock neither taken nor removed
    assert not (run / "results.json").exists() and (run / ".kdkit.lock").read_text() == lock
