"""The command line picks a task family once, from the config or the run directory, and calls its interface."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kdkit
from kdkit.errors import ConfigError, RunDirError
from kdkit.families.base import families, family_of_config, family_of_demo, family_of_run
from kdkit.run import rundir

ROOT = Path(__file__).resolve().parents[2]


def test_every_family_declares_itself_and_the_fallback_comes_last() -> None:
    found = families()
    assert {f.name for f in found} == {"classification", "lm", "tabular"}
    assert [f.fallback for f in found] == [False, False, True]


@pytest.mark.parametrize(("config", "family"), [("lm_addition.yaml", "lm"), ("demo.yaml", "classification"),
                                                ("tagging.yaml", "classification"), ("tabular.yaml", "tabular")])
def test_a_config_picks_its_family(config: str, family: str) -> None:
    assert family_of_config(ROOT / "configs" / config).name == family


def test_a_run_directory_picks_the_family_that_wrote_it(tmp_path: Path) -> None:
    for kind in ("lm", "tabular"):
        (tmp_path / kind).mkdir()
        (tmp_path / kind / "results.json").write_text(json.dumps({"kind": kind}))
        assert family_of_run(tmp_path / kind).name == kind
    assert family_of_run(tmp_path / "nothing_here").name == "classification"  # its reader names what is missing


def test_a_tabular_run_cannot_be_exported_and_says_so_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps({"kind": "tabular"}))
    with pytest.raises(ConfigError, match="is a tabular run; `kdkit export` writes ONNX for torch models"):
        family_of_run(tmp_path).export(tmp_path, "student_kd", None, None)


def test_the_command_line_asks_no_family_question_itself() -> None:
    cli = (Path(kdkit.__file__).parent / "cli.py").read_text(encoding="utf-8")
    for fork in ("is_lm_run", "run_kind", "load_lm_config", "is_lm_config", "== \"tabular\"", "== \"lm\"",
                 "run_lm_demo"):
        assert fork not in cli, fork


def test_a_demo_task_picks_its_family_and_an_unknown_one_names_every_task() -> None:
    assert family_of_demo("lm").name == "lm"
    assert {family_of_demo(t).name for t in ("signals", "text", "tagging")} == {"classification"}
    with pytest.raises(ConfigError, match="unknown demo 'nope'; choose one of: signals, text, tagging, lm$"):
        family_of_demo("nope")


def test_each_family_declares_its_verdict_metrics_and_a_run_layout_of_names_the_run_directory_owns() -> None:
    owned = {value for key, value in vars(rundir).items() if key.isupper() and isinstance(value, str)}
    for family in families():
        assert family.verdict_metrics, family.name
        assert set(family.run_files) <= owned, (family.name, set(family.run_files) - owned)
    assert [m.key for m in family_of_demo("lm").verdict_metrics] == ["exact_match", "token_accuracy"]


def test_a_finished_run_holds_only_what_its_family_declares(tiny_run: Path) -> None:
    family = family_of_run(tiny_run)
    written = {p.name for p in tiny_run.iterdir()} - {rundir.LOCK}
    assert written and written <= set(family.run_files), written - set(family.run_files)
    verdict = json.loads((tiny_run / rundir.RESULTS).read_text())["verdict"]
    assert verdict["metric"] in {m.words for m in family.verdict_metrics}


def test_compare_refuses_a_mix_of_language_model_and_classification_runs_in_one_line(tmp_path: Path) -> None:
    for kind in ("classification", "lm"):
        (tmp_path / kind).mkdir()
        (tmp_path / kind / "results.json").write_text(json.dumps({"kind": kind}))
    from kdkit.families.runs import write_compare

    with pytest.raises(RunDirError, match=r"classification is not a language-model run but .*lm is; compare "
                                          "language-model runs with each other and classification runs"):
        write_compare([tmp_path / "classification", tmp_path / "lm"], tmp_path / "out")


def test_a_language_model_run_holds_only_what_its_family_declares(tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from kdkit.families.lm.demo import run_lm_demo

    smaller = ["data.n_train=64", "data.n_transfer=32", "data.n_val=16", "data.n_test=16", "teacher.train.epochs=1",
               "train.epochs=1", "data.digits=2"]
    run_lm_demo(seed=0, output_dir=tmp_path / "lm", quick=True, overrides=smaller, console=Console(file=io.StringIO()))
    family = family_of_run(tmp_path / "lm")
    written = {p.name for p in (tmp_path / "lm").iterdir()} - {rundir.LOCK}
    assert family.name == "lm" and written <= set(family.run_files), written - set(family.run_files)
    verdict = json.loads((tmp_path / "lm" / rundir.RESULTS).read_text())["verdict"]
    assert verdict["metric"] in {m.words for m in family.verdict_metrics}
