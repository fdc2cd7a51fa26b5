"""Fair tuning: `kdkit tune` gives the student alone the same number of trials over its own train settings, prints
its best validation score beside the best distilled one, and best.yaml trains each row with its own best settings,
so the distilled student is never compared with a student alone weaker than the best one the search found."""

import csv
from pathlib import Path

import pytest
from rich.console import Console

from kdkit.data import build_data, make_loader
from kdkit.data.loaders import EVAL_BATCH_SIZE
from kdkit.errors import ConfigError
from kdkit.families.classification.config import load_config, parse_config
from kdkit.families.classification.pipeline import build_student
from kdkit.families.classification.tune import tune
from kdkit.measure.metrics import classification_report
from kdkit.schemes import Supervised
from kdkit.trainer.loop import fit, predict

AUGMENT = [{"name": "flip"}]


def _raw(tmp_path, **tune_keys):
    return {
        "seed": 0, "output_dir": str(tmp_path / "run"), "data": {"name": "digits"},
        "train": {"epochs": 2, "batch_size": 128, "lr": 3e-3, "progress": False, "augment": AUGMENT},
        "teacher": {"name": "cnn2d", "params": {"width": 8, "depth": 1}},
        "student": {"name": "mlp", "params": {"hidden": [16]}},
        "distill": {"losses": [{"name": "kd", "T": 4.0, "alpha": 0.1}]},
        "tune": {"trials": 3, "prune": False, "space": {
            "distill.losses.kd.T": {"low": 1.0, "high": 8.0, "log": True},
            "student.train.lr": {"low": 1e-3, "high": 1e-2, "log": True}}, **tune_keys},
    }


def _best_trial(path):
    rows = [r for r in csv.DictReader(path.open()) if r["state"] == "complete"]
    return max(rows, key=lambda r: float(r["macro_f1"]))


def test_each_row_gets_its_own_best_settings_and_the_alone_baseline_is_the_best_found(tmp_path):
    console = Console(record=True, width=300)
    tune(parse_config(_raw(tmp_path)), console=console)
    out = tmp_path / "run" / "tune"
    distilled, alone = _best_trial(out / "trials.csv"), _best_trial(out / "alone_trials.csv")
    assert len(list(csv.DictReader((out / "alone_trials.csv").open()))) == 3  # the same budget
    best = load_config(out / "best.yaml")
    s_alone, s_distill = best.settings("student"), best.settings("distill")
    assert s_alone.lr == pytest.approx(float(alone["student.train.lr"]))  # the alone row: its own best lr ...
    assert s_alone.augment == ([] if alone["student.train.augment"] == "[]" else AUGMENT)  # ... and augmentation
    assert s_distill.lr == pytest.approx(float(distilled["student.train.lr"]))  # the distilled row: its own lr
    assert s_distill.augment == AUGMENT  # and what its trials trained with, not the alone row's choice
    assert best.distill.losses[0]["T"] == pytest.approx(float(distilled["distill.losses.kd.T"]))
    text = console.export_text()
    assert f"distilled {float(distilled['macro_f1']):.4f}, student alone {float(alone['macro_f1']):.4f}" in text
    # the alone row of `kdkit train best.yaml` is the best alone trial again: same settings, seed, data, score
    bundle = build_data(best.data, best.seed)
    student = build_student(best, bundle)
    val = make_loader(bundle.val, EVAL_BATCH_SIZE, shuffle=False)
    fit(Supervised(student), make_loader(bundle.train, s_alone.batch_size, shuffle=True, seed=s_alone.seed), val,
        s_alone.model_copy(update={"progress": False}))
    logits, labels = predict(student, val)
    assert classification_report(logits, labels)["macro_f1"] == pytest.approx(float(alone["macro_f1"]), abs=1e-9)


def test_alone_false_searches_the_distilled_student_only(tmp_path):
    tune(parse_config(_raw(tmp_path, alone=False, trials=1)), console=Console(quiet=True))
    out = tmp_path / "run" / "tune"
    assert (out / "trials.csv").is_file() and not (out / "alone_trials.csv").exists()


def test_the_alone_space_may_only_change_how_the_student_trains():
    with pytest.raises(ConfigError, match="tune.alone_space: .*student.params.hidden.*student.train"):
        parse_config(_raw(Path("/nonexistent"), alone_space={"student.params.hidden": {"choices": [[8], [32]]}}))
