"""The tabular config: one validated schema that `kdkit tabular fit/tune CONFIG.yaml`, their flags, `kdkit train` and
`kdkit tune` all read; a mistake is one line and exit 2 before any file is read."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from kdkit.cli import main
from kdkit.errors import ConfigError
from kdkit.families.base import family_of_config
from kdkit.families.tabular.cli import FLAGS, app, settings
from kdkit.families.tabular.config import TabularConfig, load_tabular_config, parse_tabular_config
from kdkit.families.tabular.tune import default_space, search_space, trial_config

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture
def table(tmp_path: Path, binary_table) -> Path:
    X, y = binary_table
    X.assign(Y_LABEL=y).to_csv(tmp_path / "train.csv", index=False)
    return tmp_path / "train.csv"


def _config(tmp_path: Path, table: Path, **sections: dict) -> Path:
    raw = {"kind": "tabular", "output_dir": str(tmp_path / "run"),
           "data": {"train": str(table), "target": "Y_LABEL"},
           "teacher": {"name": "logreg"}, "student": {"name": "logreg", "columns": ["a", "b", "c"]},
           "distill": {"n_splits": 3}, **sections}
    path = tmp_path / "tabular.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_shipped_config_is_a_tabular_config_whose_data_is_in_the_repository(monkeypatch) -> None:
    monkeypatch.chdir(ROOT)  # its paths are relative to the repository, as `kdkit tabular fit configs/...` reads them
    path = ROOT / "configs" / "tabular.yaml"
    assert family_of_config(path).name == "tabular"
    cfg = load_tabular_config(path)
    assert cfg.data.train.is_file() and len(cfg.student.columns) == 10 and cfg.teacher.columns is None
    defaults = TabularConfig(data={"train": "x.csv", "target": "y"}).model_dump()
    for section in ("teacher", "distill", "tune"):  # the file shows the defaults it does not mark otherwise
        assert cfg.model_dump()[section] == defaults[section], section


@pytest.mark.parametrize("command", ["fit", "tune"])
def test_a_misspelt_key_is_one_line_and_exit_2_before_any_file_is_read(command, tmp_path, table,
                                                                       monkeypatch) -> None:
    import kdkit.families.tabular.io

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("a CSV was read before the config was checked")

    monkeypatch.setattr(kdkit.families.tabular.io, "read_table", no_reading)
    path = _config(tmp_path, table, distill={"alpah": 0.5})
    result = runner.invoke(app, [command, str(path)])
    assert result.exit_code == 2 and result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["error: config error at distill.alpah: unknown key; did you mean 'alpha'?"]
    assert not (tmp_path / "run").exists()


def test_a_flag_and_its_key_are_one_setting(tmp_path, table) -> None:
    """A flag sets its key over the file; the flags alone give the config that writes the same values."""
    path = _config(tmp_path, table)
    by_flag = settings(path, {"alpha": 0.5, "student_columns": "a, b", "teacher_params": '{"C": 0.5}'})
    raw = yaml.safe_load(path.read_text())
    raw["distill"]["alpha"], raw["student"]["columns"], raw["teacher"]["params"] = 0.5, ["a", "b"], {"C": 0.5}
    assert by_flag == parse_tabular_config(raw)
    flags_only = settings(None, {"train": table, "target": "Y_LABEL", "teacher": "logreg", "student": "logreg",
                                 "student_columns": "a,b,c", "n_splits": 3, "run_dir": tmp_path / "run"})
    assert flags_only == load_tabular_config(path)


def test_a_bad_value_names_the_flag_that_set_it_or_else_the_key(tmp_path, table) -> None:
    with pytest.raises(ConfigError, match=r"^--holdout: must be a share of the rows in \(0, 0.5\]"):
        settings(_config(tmp_path, table), {"holdout": 0.7})
    with pytest.raises(ConfigError, match=r"^config error at data.holdout.fraction: must be a share"):
        settings(_config(tmp_path, table, data={"train": str(table), "target": "Y_LABEL",
                                                "holdout": {"fraction": 0.7}}), {})
    with pytest.raises(ConfigError, match="give a config .* or --train and --target"):
        settings(None, {"train": table})


def test_every_flag_sets_a_key_of_the_schema_and_is_an_option_of_its_commands() -> None:
    import inspect

    from kdkit.families.tabular import cli

    for flag, path in FLAGS.values():
        model: typing.Any = TabularConfig
        for key in path.split("."):
            assert key in model.model_fields, (flag, path)
            found = model.model_fields[key].annotation
            model = next((a for a in (typing.get_args(found) or (found,)) if hasattr(a, "model_fields")), None)
    params = set(inspect.signature(cli.fit).parameters) | set(inspect.signature(cli.tune).parameters)
    assert set(FLAGS) <= params


def test_the_default_search_is_each_models_space_and_alpha_and_both_ends_are_valid_configs(tmp_path, table) -> None:
    cfg = settings(None, {"train": table, "target": "Y_LABEL", "teacher": "catboost", "student": "mlp"})
    space = default_space(cfg)
    assert {"teacher.params.depth", "student.params.hidden", "distill.alpha"} <= set(space)
    assert all(p.split(".")[0] in ("teacher", "student", "distill") for p in space)
    raw = cfg.model_dump(mode="json")
    low = trial_config(raw, {p: s.low if s.choices is None else s.choices[0] for p, s in space.items()})
    assert low.teacher.params["depth"] == 3 and low.student.params["hidden"] == [32, 16]
    own = settings(None, {"train": table, "target": "Y_LABEL"}).model_copy()
    assert search_space(own) == default_space(own)


def test_a_search_may_not_change_the_data(tmp_path, table) -> None:
    path = _config(tmp_path, table, tune={"space": {"data.holdout.seed": {"low": 0, "high": 3, "integer": True}}})
    with pytest.raises(ConfigError, match="config error at tune.space: data.holdout.seed: the data and the run's "
                                          "settings are fixed during a search"):
        load_tabular_config(path)


def _main(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0


def test_kdkit_train_and_tune_run_a_tabular_config_through_its_family(tmp_path, table, capsys) -> None:
    path = _config(tmp_path, table, tune={"trials": 2})
    _main(["train", str(path)])
    printed = capsys.readouterr().out
    assert "distilled logreg (alpha=0)" in printed and "verdict: " in printed
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["cost"] == {"plan": "full", "repeats": {"latency": 20, "throughput": 5}}
    _main(["tune", str(path), "--trials", "3", "-o", str(tmp_path / "search")])
    assert "kdkit tune: validation log_loss, 3 trials" in capsys.readouterr().out
    best = tmp_path / "search" / "tune" / "best.yaml"
    assert load_tabular_config(best).output_dir == tmp_path / "search"  # `kdkit tabular fit best.yaml` runs it


@pytest.mark.parametrize("command", [["train"], ["tabular", "fit"]])
def test_quick_timing_is_recorded_in_the_results_and_noted_for_the_report(command, tmp_path, table, capsys) -> None:
    _main([*command, str(_config(tmp_path, table)), "--quick-timing"])
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["cost"] == {"plan": "quick", "repeats": {"latency": 3, "throughput": 2}}
    assert any("quick plan" in note for note in results["notes"])  # the report shows the run's notes
