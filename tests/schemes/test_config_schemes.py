"""`distill.scheme` in a config: every scheme runs through the pipeline, saves its extra models, re-evaluates from its
run directory, and a misplaced key is one clear line before anything trains."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from toy import mnist1d_config

from kdkit.errors import ConfigError, ModelError
from kdkit.families.classification.config import parse_config
from kdkit.families.classification.pipeline import evaluate_run, run

SCHEMES = {
    "assistants": ({"name": "assistants", "assistants": [{"name": "mlp", "params": {"hidden": [32]}}]},
                   ["assistant1"]),
    "multi_teacher": ({"name": "multi_teacher", "teachers": [{"name": "mlp", "params": {"hidden": [32]}}],
                       "weights": [2.0, 1.0]}, ["teacher2"]),
    "mutual": ({"name": "mutual", "T": 2.0}, ["peer1"]),
    "self_distill": ({"name": "self_distill", "decay": 0.9}, ["ema_teacher"]),
    "data_free": ({"name": "data_free", "num_samples": 256, "steps": 5}, []),
}


@pytest.fixture(scope="module")
def scheme_run(tmp_path_factory):
    """scheme_run(name): (the run of _raw with SCHEMES[name], the folder holding its run/), trained once per module:
    the multi-teacher run is also the one whose extra teacher test_a_loaded_extra_teacher_is_not_retrained loads."""
    runs = {}

    def get(scheme: str):
        if scheme not in runs:
            folder = tmp_path_factory.mktemp(scheme)
            runs[scheme] = run(parse_config(mnist1d_config(folder, SCHEMES[scheme][0])), quick_cost=True), folder
        return runs[scheme]

    return get


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_each_scheme_runs_saves_its_models_and_reevaluates(scheme, scheme_run):
    extra = SCHEMES[scheme][1]
    result, tmp_path = scheme_run(scheme)
    assert [r["role"] for r in result.rows] == ["teacher", "student_alone", "student_kd"]
    models = tmp_path / "run" / "models"
    for role in ["teacher", "student_alone", "student_kd", *extra]:
        assert (models / f"{role}.safetensors").is_file(), role
    rows = evaluate_run(tmp_path / "run", quick_cost=True)  # the saved config parses again and gives the same table
    saved = json.loads((tmp_path / "run" / "results.json").read_text())["rows"]
    assert [r["accuracy"] for r in rows] == [r["accuracy"] for r in saved]
    kd = load_file(models / "student_kd.safetensors")
    alone = load_file(models / "student_alone.safetensors")
    assert any(not torch.equal(kd[k], alone[k]) for k in kd)  # same start, different training signal
    from kdkit.report import load_run, write_report

    assert f"scheme {scheme}" in write_report(tmp_path / "run").markdown.read_text()  # the report names the scheme
    if scheme == "data_free":  # its student never saw the training split: fidelity is reported on test only
        assert load_run(tmp_path / "run").train is None
    if scheme == "assistants":  # trained in a chain: the assistant's stage, then the student's
        names = {p.name for p in (tmp_path / "run" / "checkpoints").iterdir()}
        assert {"student_kd_assistant1.last.safetensors", "student_kd.last.safetensors"} <= names


def test_a_loaded_extra_teacher_is_not_retrained(scheme_run, tmp_path):
    first, _ = scheme_run("multi_teacher")
    saved = tmp_path / "teacher2.safetensors"  # a copy: the module's multi-teacher run stays whole
    shutil.copyfile(first.run_dir / "models" / "teacher2.safetensors", saved)
    loaded = {"name": "mlp", "params": {"hidden": [32]}, "checkpoint": str(saved)}
    spec = {"name": "multi_teacher", "teachers": [loaded]}
    second = run(parse_config(mnist1d_config(tmp_path / "b", spec)), quick_cost=True)
    before, after = load_file(saved), load_file(second.run_dir / "models" / "teacher2.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not (second.run_dir / "checkpoints" / "teacher2.last.safetensors").exists()
    saved.rename(saved.with_suffix(".moved"))  # the run keeps its own copy: evaluating it needs no outside file
    assert [r["role"] for r in evaluate_run(second.run_dir, quick_cost=True)] == ["teacher", "student_alone",
                                                                                 "student_kd"]


@pytest.mark.parametrize(("scheme", "distill", "words"), [
    ({"name": "offline", "T": 2.0}, {}, ["T", "mutual"]),
    ({"name": "mutual", "assistants": [{"name": "mlp"}]}, {}, ["assistants", "assistants"]),
    ({"name": "assistants"}, {}, ["at least one model"]),
    ({"name": "multi_teacher"}, {}, ["teachers"]),
    ({"name": "multi_teacher", "teachers": [{"name": "mlp"}], "weights": [1.0]}, {}, ["one per teacher"]),
    ({"name": "mutual"}, {"losses": [{"name": "dkd"}]}, ["distill.losses", "mutual"]),
    ({"name": "self_distill"}, {"cache_teacher": True}, ["cache_teacher"]),
    ({"name": "nope"}, {}, ["distill.scheme.name"]),
    ({"name": "data_free"}, {"losses": [{"name": "dist"}]}, ["data_free", "kd"]),
    ({"name": "data_free"}, {"cache_teacher": True}, ["data_free", "cache_teacher"]),
    ({"name": "offline", "steps": 3}, {}, ["steps", "data_free"]),
])
def test_misplaced_scheme_keys_are_one_line(scheme, distill, words, tmp_path):
    with pytest.raises(ConfigError) as err:
        parse_config(mnist1d_config(tmp_path, scheme, **distill))
    message = str(err.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_self_distillation_refuses_feature_terms_before_training(tmp_path):
    raw = mnist1d_config(tmp_path, {"name": "self_distill"},
                         losses=[{"name": "fitnet", "student": "net.0", "teacher": "net.0"}])
    with pytest.raises((ConfigError, ModelError), match="logits only|net.0"):
        run(parse_config(raw))
    assert not (tmp_path / "run").exists()


def test_data_free_refuses_a_transfer_set(tmp_path):
    raw = mnist1d_config(tmp_path, {"name": "data_free"})
    raw["data"]["transfer_size"] = 100
    with pytest.raises(ConfigError, match="data.transfer_size.*data_free"):
        parse_config(raw)


@pytest.mark.parametrize(("data", "teacher", "error", "words"), [
    ("mnist1d", {"name": "mlp", "params": {"hidden": [16]}}, ModelError, ["BatchNorm", "bn_weight"]),
    ("synthetic_reviews", {"name": "text_cnn", "params": {"width": 8}}, ConfigError, ["token ids"]),
])
def test_data_free_mistakes_stop_before_any_training(tmp_path, data, teacher, error, words):
    raw = mnist1d_config(tmp_path, {"name": "data_free"}, losses=[{"name": "kd"}])
    raw["data"] = {"name": data}
    raw["teacher"] = teacher
    if data != "mnist1d":
        raw["student"] = {"name": "text_bow"}
    with pytest.raises(error) as err:
        run(parse_config(raw))
    assert all(w in str(err.value) for w in words) and "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()
