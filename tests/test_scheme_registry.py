"""A scheme is one file: its options model, its plan and its step live together and are found by
the registry; the config, the pipeline, tune and the report know schemes only through it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

import pytest
import yaml
from pydantic import Field
from torch.utils.data import Dataset

import kdkit
from kdkit.errors import ConfigError
from kdkit.families.classification.config import parse_config
from kdkit.families.classification.pipeline import run
from kdkit.families.classification.tune import default_space
from kdkit.schemes.plan import PlanInputs, SchemePlan
from kdkit.schemes.registry import CLASSIFICATION, LM, SCHEMES, SchemeOptions, scheme_options, schemes
from kdkit.schemes.supervised import Supervised

SRC = Path(kdkit.__file__).parent
BASE = {
    "seed": 0, "data": {"name": "digits"}, "train": {"epochs": 1, "batch_size": 64, "progress": False},
    "teacher": {"name": "mlp", "params": {"hidden": [16]}}, "student": {"name": "mlp", "params": {"hidden": [8]}},
}


def test_every_scheme_file_registers_its_options() -> None:
    assert set(schemes(CLASSIFICATION)) == {"offline", "assistants", "multi_teacher", "mutual", "self_distill",
                                           "data_free", "born_again"}
    assert set(schemes(LM)) == {"offline", "sequence_level", "on_policy", "topk_cache"}
    for name, options in schemes().items():  # each declared in the file of its scheme
        assert options.__module__ == f"kdkit.schemes.{name}", name


def test_a_scheme_name_appears_only_in_its_own_file() -> None:
    """Outside kdkit/schemes/, no module names a classification scheme (besides the default): config, pipeline,
    plans, tune and report ask the scheme's options instead."""
    names = [n for n in schemes(CLASSIFICATION) if n != "offline"]
    quoted = re.compile("|".join(rf"[\"']{n}[\"']" for n in names))
    offenders = [f"{p.relative_to(SRC)}: {line.strip()}" for p in SRC.rglob("*.py") if "schemes" not in p.parts
                 for line in p.read_text(encoding="utf-8").splitlines() if quoted.search(line)]
    assert offenders == []


def test_keys_of_another_scheme_are_refused_unless_they_hold_its_default() -> None:
    with pytest.raises(ValueError, match=r"generations does not apply to scheme 'offline' \(only to: born_again\)"):
        scheme_options({"name": "offline", "generations": 3})
    # a run directory's config.yaml written by an older kdkit holds every scheme's keys at their defaults
    old = scheme_options({"name": "born_again", "generations": 3, "T": 1.0, "alpha": 0.5, "peers": [],
                          "decay": 0.999, "weights": None, "combine": "probs"})
    assert old.model_dump() == {"name": "born_again", "generations": 3}
    with pytest.raises(ConfigError, match=r"distill.scheme.name: unknown scheme 'born_agian'; did you mean "
                                          "'born_again'"):
        parse_config({**BASE, "distill": {"scheme": {"name": "born_agian"}}})
    with pytest.raises(ConfigError, match=r"distill.scheme.gnerations: unknown key; did you mean 'generations'"):
        parse_config({**BASE, "distill": {"scheme": {"name": "born_again", "gnerations": 3}}})


def test_a_run_directory_config_keeps_only_its_schemes_keys(tmp_path) -> None:
    cfg = parse_config({**BASE, "distill": {"scheme": {"name": "self_distill", "decay": 0.9}}})
    assert cfg.model_dump()["distill"]["scheme"] == {"name": "self_distill", "decay": 0.9, "warmup_epochs": 0}
    assert parse_config(cfg.model_dump(mode="json")).distill.scheme == cfg.distill.scheme  # and reads back


@pytest.fixture
def labels_only():
    """A scheme written as a user would, in one place: the student learns the labels only, with its own label
    smoothing. Registered when the class is created; unregistered afterwards (other tests list the schemes)."""

    class LabelsOnlyPlan(SchemePlan):
        def scheme(self, distill_set: Dataset, run_dir: Path | None) -> Supervised:
            return Supervised(self.student, self.options.smoothing)

    class LabelsOnly(SchemeOptions):
        name: Literal["labels_only"] = "labels_only"
        smoothing: float = Field(0.0, ge=0, lt=1)
        reads_losses = False

        def tune_space(self, losses):
            return {"distill.scheme.smoothing": {"low": 0.0, "high": 0.2}}

        def plan(self, inputs: PlanInputs) -> SchemePlan:
            return LabelsOnlyPlan(self, inputs)

    yield LabelsOnly
    SCHEMES.remove("labels_only", CLASSIFICATION)


def test_a_new_scheme_is_one_class_and_runs_through_config_pipeline_and_tune(labels_only, tmp_path) -> None:
    raw = {**BASE, "output_dir": str(tmp_path / "run"),
           "distill": {"scheme": {"name": "labels_only", "smoothing": 0.1}}}
    cfg = parse_config(raw)
    assert isinstance(cfg.distill.scheme, labels_only) and cfg.distill.scheme.smoothing == 0.1
    assert set(default_space(cfg)) == {"distill.scheme.smoothing"}
    with pytest.raises(ConfigError, match="does not read distill.losses .its options are smoothing"):
        parse_config({**raw, "distill": {**raw["distill"], "losses": [{"name": "kd", "T": 2.0}]}})
    with pytest.raises(ConfigError, match="only to: born_again"):
        parse_config({**raw, "distill": {"scheme": {"name": "labels_only", "generations": 3}}})
    run(cfg, quick_cost=True)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [r["model"] for r in results["rows"]] == ["teacher", "student alone", "distilled student"]
    saved = parse_config(yaml.safe_load((tmp_path / "run" / "config.yaml").read_text()))
    assert saved.distill.scheme == cfg.distill.scheme  # the run directory reads back with its scheme
