"""`--set PATH=VALUE` and `-o DIR` on `kdkit train`, `tune` and `demo`: values read as YAML, set at their dotted
path, and checked exactly as the same mistake in the file is (one line naming the path, "did you mean")."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hostile import TINY, assert_refused, cli

from kdkit.errors import ConfigError
from kdkit.families.classification.config import load_config
from kdkit.families.classification.demo import demo_config
from kdkit.families.lm.config import load_lm_config

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "configs" / "demo.yaml"


def test_values_are_yaml_and_paths_reach_sections_lists_and_terms():
    cfg = load_config(DEMO, ["train.epochs=7", "distill.losses.0.T=3", "distill.losses.kd.alpha=0.25",
                             "train.lr=1e-3", "student.params.hidden=[32, 16]", "distill.boundary.num_samples=50"],
                      output_dir="runs/x")
    assert cfg.train.epochs == 7 and cfg.train.lr == 0.001 and str(cfg.output_dir) == "runs/x"
    assert cfg.distill.losses == [{"name": "kd", "T": 3, "alpha": 0.25}]
    assert cfg.student.params == {"hidden": [32, 16]} and cfg.distill.boundary.num_samples == 50
    assert load_config(DEMO).model_dump() == demo_config().model_dump()  # the file itself is left as it was


def test_a_list_the_file_leaves_out_starts_as_its_default(tmp_path):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({k: v for k, v in TINY.items() if k != "distill"}))
    cfg = load_config(tmp_path / "c.yaml", ["distill.losses.0.T=2"])
    assert cfg.distill.losses == [{"name": "kd", "T": 2}]


@pytest.mark.parametrize(("override", "line"), [
    ("train.epocs=3", "config error at train.epocs: unknown key; did you mean 'epochs'?"),
    ("trian.epochs=3", "config error at trian: unknown key; did you mean 'train'?"),
    ("train.epochs=-1", "config error at train.epochs: Input should be greater than or equal to 1 (got -1)"),
    ("distill.losses.0.T=hot", "distill.losses.0.T"),
    ("distill.losses.2.T=2", "--set distill.losses.2.T=2: distill.losses has 1 item(s); no item '2'"),
    ("train.epochs.x=2", "--set train.epochs.x=2: train.epochs is a value (30), not a section"),
    ("train.epochs", "--set train.epochs: give PATH=VALUE"),
    ("train.epochs=[1", "--set train.epochs=[1: the value is not valid YAML"),
])
def test_a_wrong_override_is_the_files_error_line(tmp_path, override, line):
    with pytest.raises(ConfigError) as err:
        load_config(DEMO, [override])
    assert line in str(err.value) and "\n" not in str(err.value)
    if override.startswith(("train.epocs", "trian", "train.epochs=-1")):  # the same line as the same edit of the file
        path, value = override.split("=")
        raw = yaml.safe_load(DEMO.read_text())
        node = raw
        for key in path.split(".")[:-1]:
            node = node.setdefault(key, {})
        node[path.split(".")[-1]] = yaml.safe_load(value)
        (tmp_path / "edited.yaml").write_text(yaml.safe_dump(raw))
        with pytest.raises(ConfigError) as from_file:
            load_config(tmp_path / "edited.yaml")
        assert str(from_file.value) == str(err.value)


def test_language_model_configs_and_the_demos_take_overrides_too():
    lm = load_lm_config(ROOT / "configs" / "lm_addition.yaml", ["teacher.train.epochs=3", "distill.losses.1.T=2"],
                        output_dir="runs/lm_x")
    assert lm.teacher.train == {"epochs": 3} and lm.distill.losses[1]["T"] == 2 and str(lm.output_dir) == "runs/lm_x"
    assert demo_config(quick=True, overrides=["train.epochs=1"]).train.epochs == 1


def test_the_commands_take_set_and_output_dir(tmp_path):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    done = cli(["train", tmp_path / "tiny.yaml", "--set", "teacher.params.hidden=[12]", "--set",
                "distill.losses.kd.T=3", "-o", tmp_path / "run", "--quick-timing"])  # checks the config saved
    assert done.code == 0, done.err + done.crash
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["teacher"]["params"] == {"hidden": [12]} and saved["distill"]["losses"][0]["T"] == 3
    assert saved["output_dir"] == str(tmp_path / "run")
    assert_refused(cli(["tune", tmp_path / "tiny.yaml", "--set", "tune.trails=2"]), "tune.trails", "did you mean")
    assert_refused(cli(["demo", "--set", "distill.losses.0.T=0"]), "distill.losses.0", "T must be > 0")
    assert_refused(cli(["demo", "--task", "lm", "--set", "train.epocs=1"]), "train.epocs", "did you mean 'epochs'")
