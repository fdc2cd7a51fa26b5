"""Two `kdkit tabular tune` workers share one Optuna study in a real PostgreSQL server: every trial of both is
stored once, with no duplicate trial numbers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/postgres.py
import postgres  # noqa: E402

optuna = pytest.importorskip("optuna")
pytestmark = pytest.mark.skipif(postgres.available() is not None, reason=str(postgres.available()))


def test_two_workers_share_one_study_on_postgres(binary_table, tmp_path: Path, postgres_url: str) -> None:
    X, y = binary_table
    frame = X.assign(ID=[f"r{i}" for i in range(len(X))], Y_LABEL=y)
    frame.iloc[:180].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[180:][["ID", "a", "b", "c", "kind"]].to_csv(tmp_path / "test.csv", index=False)
    url = postgres_url
    workers = [subprocess.Popen(
        [sys.executable, "-c", "from kdkit.cli import main; main()", "tabular", "tune",
         "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"), "--target", "Y_LABEL",
         "--id", "ID", "--n-splits", "2", "--teacher", "hist_gb", "--student", "hist_gb",
         "--n-trials", "3", "--storage", url, "--study-name", "shared", "--run-dir", str(tmp_path / f"w{i}")],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    study = optuna.load_study(study_name="shared", storage=url)
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == list(range(6))  # 2 workers x 3 trials, each stored once
    assert all(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
               for t in study.trials)
    assert all((tmp_path / f"w{i}" / "tune" / "best.yaml").is_file() for i in range(2))
