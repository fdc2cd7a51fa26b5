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


def test_a_language_model_scheme_name_appears_only_in_its_own_file() -> None:
    """Outside kdkit/schemes/, no module names a language-model scheme (besides the default): the LM config and run
    ask the scheme's options and plan instead. The LM demo is a config that names the scheme it runs, as
    configs/lm_addition.yaml does."""
    names = [n for n in schemes(LM) if n != "offline"]
    quoted = re.compile("|".join(rf"[\"']{n}[\"']" for n in names))
    configs = {Path("families/lm/demo.py")}
    offenders = [f"{p.relative_to(SRC)}: {line.strip()}" for p in SRC.rglob("*.py")
                 if "schemes" not in p.parts and p.relative_to(SRC) not in configs
                 for line in p.read_text(encoding="utf-8").splitlines() if quoted.search(line)]
    assert offenders == []


@pytest.fixture
def lm_labels_only():
    """A language-model scheme written in one place: the distilled student learns the labelled pairs alone, and the
    scheme refuses terms without ce. Unregistered afterwards."""
    from kdkit.errors import ConfigError as Refused
    from kdkit.schemes.lm_common import LMSchemeOptions
    from kdkit.schemes.lm_plan import LMPlan

    class LabelsOnlyLMPlan(LMPlan):
        def indexed(self) -> bool:
            return False

        def scheme(self, train_set: Dataset) -> Supervised:
            self.extra["rows"] = len(train_set)
            return Supervised(self.inputs.student)

    class LabelsOnlyLM(LMSchemeOptions):
        name: Literal["lm_labels_only"] = "lm_labels_only"
        note: str = "labels"

        def check_config(self, losses):
            if not any(t.get("name") == "ce" for t in losses):
                raise Refused("config error at distill.losses: scheme 'lm_labels_only' needs a ce term")

        def plan(self, inputs) -> LMPlan:
            return LabelsOnlyLMPlan(self, inputs)

    yield LabelsOnlyLM
    SCHEMES.remove("lm_labels_only", LM)


def test_a_new_language_model_scheme_is_one_class_and_runs_through_config_and_run(lm_labels_only, tmp_path) -> None:
    from kdkit.cli import main
    from kdkit.families.lm.config import parse_lm_config

    raw = yaml.safe_load((SRC.parents[1] / "configs" / "lm_addition.yaml").read_text())
    raw["output_dir"] = str(tmp_path / "run")
    raw["data"].update({"digits": 2, "n_train": 48, "n_transfer": 0, "n_val": 16, "n_test": 16})
    raw["train"]["epochs"], raw["teacher"]["train"] = 1, {"epochs": 1}
    raw["teacher"]["params"] = {"layers": 1, "width": 16, "heads": 2}
    raw["student"]["params"] = {"layers": 1, "width": 8, "heads": 2}
    raw["distill"]["scheme"] = {"name": "lm_labels_only", "note": "pairs"}
    assert isinstance(parse_lm_config(raw).distill.scheme, lm_labels_only)
    with pytest.raises(ConfigError, match="scheme 'lm_labels_only' needs a ce term"):
        parse_lm_config({**raw, "distill": {**raw["distill"], "losses": [{"name": "forward_kl"}]}})
    with pytest.raises(ConfigError, match=r"distill.scheme.nte: unknown key; did you mean 'note'"):
        parse_lm_config({**raw, "distill": {**raw["distill"], "scheme": {"name": "lm_labels_only", "nte": "x"}}})
    (tmp_path / "lm.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(SystemExit) as done:
        main(["train", str(tmp_path / "lm.yaml")])
    assert not done.value.code
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["training"] == {"scheme": "lm_labels_only", "rows": 48}
    assert [r["model"] for r in results["rows"]] == ["teacher", "student alone", "distilled student"]
    rows = {r["model"]: r for r in results["rows"]}  # labels alone, same start and settings: the same student
    assert rows["distilled student"]["perplexity"] == rows["student alone"]["perplexity"]
    rows = {r["model"]: r for r in results["rows"]}  # labels alone, same start and settings: the same student
    assert rows["distilled student"]["perplexity"] == rows["student alone"]["perplexity"]
