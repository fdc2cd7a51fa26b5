"""`kdkit tune`: an Optuna search over config paths, scored on validation data, reproducible, with a runnable
best.yaml, and one-line errors for a bad search space."""

import csv
import re

import pytest
import yaml

from kdkit.cli import main
from kdkit.errors import ConfigError
from kdkit.families.classification.config import load_config, parse_config
from kdkit.families.classification.tune import tune
from kdkit.tune.space import set_path


def _raw(tmp_path, name="run", space=None):
    return {
        "seed": 0, "output_dir": str(tmp_path / name), "data": {"name": "digits"},
        "train": {"epochs": 2, "batch_size": 128, "lr": 3e-3, "progress": False},
        "teacher": {"name": "cnn2d", "params": {"width": 8, "depth": 1}},
        "student": {"name": "mlp", "params": {"hidden": [16]}},
        "distill": {"losses": [{"name": "kd", "T": 4.0, "alpha": 0.1}]},
        "tune": {"trials": 3, "alone": False, "space": space or {  # the alone search: tests/tune/test_tune_alone.py
            "distill.losses.0.T": {"low": 1.0, "high": 8.0, "log": True},
            "distill.losses.0.alpha": {"low": 0.0, "high": 0.9},
            "distill.train.epochs": {"low": 1, "high": 3, "integer": True},
        }},
    }


def test_search_writes_trials_and_a_runnable_best_config(tmp_path):
    best = tune(parse_config(_raw(tmp_path)))
    out = tmp_path / "run" / "tune"
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert len(rows) == 3 and len({r["distill.losses.0.T"] for r in rows}) == 3  # three different trials
    for r in rows:
        assert 1.0 <= float(r["distill.losses.0.T"]) <= 8.0 and 0.0 <= float(r["distill.losses.0.alpha"]) <= 0.9
        assert r["distill.train.epochs"] in ("1", "2", "3")
    top = max((r for r in rows if r["state"] == "complete"), key=lambda r: float(r["macro_f1"]))
    assert float(top["distill.losses.0.T"]) == pytest.approx(best["distill.losses.0.T"])
    cfg = load_config(out / "best.yaml")  # a valid config carrying the best values
    assert cfg.distill.losses[0]["T"] == pytest.approx(best["distill.losses.0.T"])
    assert cfg.distill.train["epochs"] == best["distill.train.epochs"]
    assert (out / "study.db").is_file() and (out / "checkpoints" / "teacher.last.safetensors").is_file()


def test_same_config_same_search(tmp_path):
    first = tune(parse_config(_raw(tmp_path, "a")), trials=2)
    second = tune(parse_config(_raw(tmp_path, "b")), trials=2)
    assert first == second
    a = list(csv.DictReader((tmp_path / "a" / "tune" / "trials.csv").open()))
    b = list(csv.DictReader((tmp_path / "b" / "tune" / "trials.csv").open()))
    assert a == b  # same values tried, same validation scores


def test_set_path_reaches_lists_and_new_leaves():
    raw = {"distill": {"losses": [{"name": "kd"}], "train": {}}}
    set_path(raw, "distill.losses.0.T", 2.0)
    set_path(raw, "distill.train.lr", 0.01)
    assert raw == {"distill": {"losses": [{"name": "kd", "T": 2.0}], "train": {"lr": 0.01}}}
    with pytest.raises(ConfigError, match="does not exist"):
        set_path(raw, "distill.losses.3.T", 1.0)


@pytest.mark.parametrize(("space", "words"), [
    ({"distill.losses.4.T": {"low": 1, "high": 2}}, ["distill.losses.4", "does not exist"]),
    ({"distill.losses.0.T": {"low": 3, "high": 2}}, ["low < high"]),
    ({"distill.losses.0.T": {"low": 0, "high": 2, "log": True}}, ["low > 0"]),
    ({"distill.losses.0.alpha": {"low": 0.5, "high": 2.0}}, ["alpha"]),  # the high end is no valid alpha
    ({"distill.losses.0.tau": {"low": 1, "high": 2}}, ["tau"]),
])
def test_bad_search_space_is_one_line_before_training(tmp_path, capsys, space, words):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_raw(tmp_path, "never", space)))
    with pytest.raises(SystemExit) as exit_info:
        main(["tune", str(path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and all(w in lines[0] for w in words), err
    assert not (tmp_path / "never").exists()


def test_hopeless_trials_are_pruned_early(tmp_path, capsys):
    raw = _raw(tmp_path, space={"distill.train.lr": {"low": 1e-7, "high": 3e-2, "log": True}})
    raw["distill"]["train"] = {"epochs": 4}
    raw["tune"]["trials"] = 10
    tune(parse_config(raw))
    rows = list(csv.DictReader((tmp_path / "run" / "tune" / "trials.csv").open()))
    pruned = [r for r in rows if r["state"] == "pruned"]
    assert pruned, rows  # a learning rate of 1e-6 cannot keep up with the median
    assert all(1 < int(r["epochs_reported"]) < 4 for r in pruned)  # never at the first or the last epoch
    assert all(int(r["epochs_reported"]) == 4 for r in rows if r["state"] == "complete")
    # the printed counts are the rows: pruned trials are neither counted complete nor listed (Optuna gives them a
    # value, their last reported one)
    complete = {r["trial"] for r in rows if r["state"] == "complete"}
    printed = capsys.readouterr().out
    assert f"10 trials: {len(complete)} complete (all {len(complete)} below, best first), {len(pruned)} pruned" \
        in printed
    listed = {line.split("│")[1].strip() for line in printed.splitlines() if re.match(r"│ +\d+ │", line)}
    assert listed == complete
    assert all(f"trial {r['trial']} " not in line or "pruned after epoch" in line
               for r in pruned for line in printed.splitlines() if line.startswith(f"trial {r['trial']} "))


def _csv(tmp_path, name="run"):
    return list(csv.DictReader((tmp_path / name / "tune" / "trials.csv").open()))


def test_a_rerun_continues_with_new_values_and_refuses_another_metric(tmp_path):
    raw = _raw(tmp_path)
    tune(parse_config(raw), trials=2)
    tune(parse_config(raw), trials=2)
    rows = _csv(tmp_path)
    assert len(rows) == 4
    assert {r["distill.losses.0.T"] for r in rows[:2]}.isdisjoint({r["distill.losses.0.T"] for r in rows[2:]})
    raw["tune"]["metric"] = "nll"
    with pytest.raises(ConfigError, match="holds a search with another metric;"):
        tune(parse_config(raw), trials=1)


def test_a_study_keeps_its_held_out_rows_and_adopts_them_when_made_before_it_kept_any(tmp_path):
    from types import SimpleNamespace

    import optuna

    from kdkit.tune.config import SearchRange
    from kdkit.tune.study import search_study

    cfg = SimpleNamespace(seed=0, tune=SimpleNamespace(metric="accuracy", study="s"))
    space = {"distill.alpha": SearchRange(low=0.0, high=1.0)}
    old = search_study(optuna, tmp_path, cfg, space)  # an older study: no held-out rows in its signature
    assert "held_out" not in old.user_attrs["search"]
    rows = {"test_file": False, "fraction": 0.2, "seed": 0}
    assert search_study(optuna, tmp_path, cfg, space, held_out=rows).user_attrs["search"]["held_out"] == rows
    with pytest.raises(ConfigError, match="other held-out rows .*'seed': 0.*now .*'seed': 1"):
        search_study(optuna, tmp_path, cfg, space, held_out={**rows, "seed": 1})


def test_a_diverging_trial_is_recorded_and_the_search_goes_on(tmp_path):
    raw = _raw(tmp_path, space={"distill.train.lr": {"choices": [0.01, 1.0e12]}})
    raw["distill"]["train"] = {"optimizer": "sgd", "epochs": 1}
    raw["tune"]["trials"] = 4
    tune(parse_config(raw))
    rows = _csv(tmp_path)
    assert len(rows) == 4 and {r["state"] for r in rows} == {"complete", "fail"}
    assert all("loss became" in r["error"] for r in rows if r["state"] == "fail")
    assert float(yaml.safe_load((tmp_path / "run" / "tune" / "best.yaml").read_text())["distill"]["train"]["lr"]) \
        == 0.01


def test_mutual_learning_gets_its_own_default_space(tmp_path):
    raw = _raw(tmp_path)
    raw["distill"] = {"scheme": {"name": "mutual"}, "train": {"epochs": 1}}
    del raw["tune"]["space"]
    best = tune(parse_config(raw), trials=2)
    assert set(best) == {"distill.scheme.T", "distill.scheme.alpha"}


@pytest.mark.parametrize(("space", "words"), [
    ({"data.transfer_size": {"low": 0, "high": 10, "integer": True}}, ["data.transfer_size", "fixed"]),
    ({"teacher.params.width": {"choices": [4, 8]}}, ["teacher.params.width", "fixed"]),
    ({"student.params.hiddn": {"choices": [[8], [16]]}}, ["hiddn"]),
    ({"student.params.dropout": {"low": 0.0, "high": 1.5}}, ["dropout"]),
    ({"distill.train.optimizer": {"choices": ["adamw", "bogus", "sgd"]}}, ["optimizer", "bogus"]),
    ({"distill.train.epochs": {"low": 2.2, "high": 2.8, "integer": True}}, ["whole number"]),
    ({"distill.losses.0.name": {"choices": ["kd", "fitnet"]}}, ["fitnet"]),  # fitnet without module paths
])
def test_space_mistakes_fail_before_the_teacher_trains(tmp_path, space, words):
    with pytest.raises(ConfigError) as err:
        tune(parse_config(_raw(tmp_path, space=space)))
    assert "\n" not in str(err.value) and all(w in str(err.value) for w in words), str(err.value)
    assert not (tmp_path / "run" / "tune" / "checkpoints").exists()


def test_integer_ranges_stay_inside_their_bounds(tmp_path):
    tune(parse_config(_raw(tmp_path, space={"distill.train.epochs": {"low": 0.6, "high": 2.4, "integer": True}})),
         trials=3)
    assert {r["distill.train.epochs"] for r in _csv(tmp_path)} <= {"1", "2"}


def test_pruned_and_failed_trials_leave_no_hooks_on_the_shared_teacher(tmp_path, monkeypatch):
    import kdkit.families.classification.tune as tune_module

    teachers = []
    real = tune_module.train_or_load
    monkeypatch.setattr(tune_module, "train_or_load", lambda m, *a, **k: (teachers.append(m), real(m, *a, **k)))
    raw = _raw(tmp_path, space={"distill.train.lr": {"choices": [0.01, 1.0e12]}})
    raw["distill"] = {"losses": [{"name": "kd"}, {"name": "fitnet", "student": "features.1", "teacher": "features.0"}],
                      "train": {"optimizer": "sgd", "epochs": 1}}
    tune(parse_config(raw), trials=3)
    assert {r["state"] for r in _csv(tmp_path)} == {"complete", "fail"}
    assert not any(m._forward_hooks for m in teachers[0].modules())


def test_best_config_reuses_the_teacher_tune_trained_and_trials_are_reported(tmp_path, capsys):
    from kdkit.io.checkpoint import read_state

    raw = _raw(tmp_path)
    tune(parse_config(raw), trials=2)
    out = tmp_path / "run" / "tune"
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["teacher"]["checkpoint"] == str(out / "teacher.safetensors")
    saved = read_state(out / "teacher.safetensors")
    trained = read_state(out / "checkpoints" / "teacher.best.safetensors")  # keep: best hands back this epoch
    assert saved.keys() == trained.keys() and all((saved[k] == trained[k]).all() for k in saved)
    printed = capsys.readouterr().out
    assert "trial 0 (1/2): macro_f1 " in printed and "trial 1 (2/2): " in printed
    assert "best so far" in printed and "distill.losses.0.T=" in printed
    cfg = load_config(out / "best.yaml")  # `kdkit train best.yaml` loads this teacher instead of training one
    assert cfg.teacher.checkpoint == out / "teacher.safetensors"
