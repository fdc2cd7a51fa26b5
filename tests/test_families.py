"""The command line picks a task family once, from the config or the run directory, and calls its interface."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kdkit
from kdkit.errors import ConfigError
from kdkit.families.base import families, family_of_config, family_of_run

ROOT = Path(__file__).resolve().parents[1]


def test_every_family_declares_itself_and_the_fallback_comes_last() -> None:
    found = families()
    assert {f.name for f in found} == {"classification", "lm", "tabular"}
    assert [f.fallback for f in found] == [False, False, True]


@pytest.mark.parametrize(("config", "family"), [("lm_addition.yaml", "lm"), ("demo.yaml", "classification"),
                                                ("tagging.yaml", "classification")])
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
    for fork in ("is_lm_run", "run_kind", "load_lm_config", "is_lm_config", "== \"tabular\""):
        assert fork not in cli, fork
