"""Progress shows without a terminal: `fit` writes plain lines (stage, epoch, step, elapsed, ETA, loss) that a log
file keeps, and keeps rich's bars in a terminal; evaluate, export and tune say what they are doing."""

from __future__ import annotations

import io
import re

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from kdkit import Supervised, TrainSettings, fit
from kdkit.trainer import loop
from kdkit.trainer.progress import PlainProgress, clock

LINE = re.compile(r"^net: epoch (\d+)/3, step (\d+)/5, elapsed \d+:\d\d:\d\d, ETA (\d+:\d\d:\d\d|\?), loss \d")


def _data() -> tuple[DataLoader, DataLoader]:
    torch.manual_seed(0)
    x, y = torch.randn(80, 6), torch.randint(0, 3, (80,))
    return (DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True),
            DataLoader(TensorDataset(x[:32], y[:32]), batch_size=32))


def test_fit_without_a_terminal_prints_plain_lines(capsys):
    train, val = _data()
    fit(Supervised(nn.Linear(6, 3)), train, val, TrainSettings(epochs=3, lr=1e-2), name="net")
    lines = capsys.readouterr().out.strip().splitlines()  # pytest's captured stdout is not a terminal
    assert lines[0] == "net: 3 epochs x 5 steps"
    epochs = [LINE.match(line) for line in lines[1:4]]
    assert all(epochs), lines
    assert [(m.group(1), m.group(2)) for m in epochs] == [("1", "5"), ("2", "5"), ("3", "5")]
    assert epochs[-1].group(3) == "0:00:00"  # nothing left after the last epoch
    assert re.match(r"net: done, 15/15 steps in \d+:\d\d:\d\d$", lines[4])
    assert not any("\r" in line or "\x1b" in line for line in lines)  # no terminal control codes in a log


def test_long_epochs_get_lines_in_between():
    out = io.StringIO()
    with PlainProgress(epochs=2, file=out, every=0) as bar:  # every=0: a line per step
        task = bar.add_task("teacher", total=8)
        for _ in range(3):
            bar.update(task, advance=1, loss=torch.tensor(0.5))
    lines = out.getvalue().splitlines()
    assert lines[1].startswith("teacher: epoch 1/2, step 1/4, elapsed ")
    assert lines[3].startswith("teacher: epoch 1/2, step 3/4") and lines[3].endswith("loss 0.5000")
    assert "ETA" in lines[3] and "?" not in lines[3]


def test_quiet_when_progress_is_off_and_bars_in_a_terminal(capsys, monkeypatch):
    train, val = _data()
    fit(Supervised(nn.Linear(6, 3)), train, val, TrainSettings(epochs=1, progress=False), name="net")
    assert capsys.readouterr().out == ""
    monkeypatch.setattr(loop, "is_terminal", lambda: True)
    assert not isinstance(loop._progress(True, 3), PlainProgress)
    monkeypatch.setattr(loop, "is_terminal", lambda: False)
    assert isinstance(loop._progress(True, 3), PlainProgress)


def test_clock():
    assert clock(0) == "0:00:00" and clock(3725.4) == "1:02:05"


def test_tabular_fit_and_tune_print_plain_lines_per_fold_and_trial(tmp_path, capsys):
    """Without a terminal (as here), `kdkit tabular fit` and `tune` report every fold model and every trial as a
    plain line, which log files keep."""
    import numpy as np
    import pandas as pd
    from typer.testing import CliRunner

    from kdkit.families.tabular.cli import app

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "secret": x[:, 2], "y": (x.sum(1) > 0).astype(int)})
    frame.to_csv(tmp_path / "train.csv", index=False)
    frame.drop(columns=["y", "secret"]).to_csv(tmp_path / "test.csv", index=False)
    common = ["--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"), "--target", "y",
              "--teacher", "logreg", "--student", "logreg", "--n-splits", "3"]
    runner = CliRunner()
    fit = runner.invoke(app, ["fit", *common, "--run-dir", str(tmp_path / "fit")])
    assert fit.exit_code == 0, fit.output
    for stage in ("teacher", "student"):
        for fold in (1, 2, 3):
            assert f"{stage}: fold {fold}/3 fitted on" in fit.output
    assert "student alone: 3 folds" in fit.output and "ETA" in fit.output
    tune = runner.invoke(app, ["tune", *common, "--n-trials", "2", "--run-dir", str(tmp_path / "tune")])
    assert tune.exit_code == 0, tune.output
    assert "trial 0 (1/2):" in tune.output and "trial 1 (2/2):" in tune.output and "best so far" in tune.output
