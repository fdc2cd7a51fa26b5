"""`kdkit tune --storage postgresql+psycopg://...`: two workers started together share one study in a real
PostgreSQL server; every trial is stored once, numbered without duplicates, and each worker writes its best.yaml."""

import os
import subprocess
import sys

import postgres
import pytest
import yaml
from test_tune import _raw

optuna = pytest.importorskip("optuna")
pytestmark = pytest.mark.skipif(postgres.available() is not None, reason=str(postgres.available()))


def test_two_tune_workers_share_one_study_on_postgres(tmp_path, postgres_url):
    url = postgres_url
    workers = []
    for i in range(2):  # each worker its own output_dir (its teacher, trials.csv, best.yaml)
        raw = _raw(tmp_path, name=f"w{i}")
        raw["tune"]["trials"] = 2
        raw["distill"]["train"] = {"epochs": 1}
        raw["tune"]["space"].pop("distill.train.epochs")
        config = tmp_path / f"w{i}.yaml"
        config.write_text(yaml.safe_dump(raw))
        workers.append(subprocess.Popen(
            [sys.executable, "-c", "from kdkit.cli import main; main()", "tune", str(config), "--storage", url],
            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True))
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    study = optuna.load_study(study_name="kdkit", storage=url)
    assert sorted(t.number for t in study.trials) == list(range(4))  # 2 workers x 2 trials, each once
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 4  # the workers proposed apart
    assert all((tmp_path / f"w{i}" / "tune" / "best.yaml").is_file() for i in range(2))
