"""Three recipes from the literature, each against its definition: early-stopped KD (a term's until_epoch),
teacher-near initialisation (distill.init_from_teacher) and born-again networks (scheme born_again)."""

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from toy import mnist1d_config
from toy import toy_data as _data
from toy import toy_net as _net

import kdkit.schemes.assistants
import kdkit.schemes.plan
from kdkit import OfflineDistillation, Supervised, TrainSettings, build_terms, fit
from kdkit.data import build_data, make_loader
from kdkit.errors import ConfigError, ModelError
from kdkit.families.classification.config import parse_config
from kdkit.families.classification.pipeline import build_student, evaluate_run, run
from kdkit.models import teacher_near_init
from kdkit.schemes import distill_born_again

SETTINGS = TrainSettings(epochs=3, batch_size=32, lr=1e-2, progress=False, seed=0)
KD = [{"name": "kd", "T": 4.0, "alpha": 0.1}]


def _loaders():
    return make_loader(_data(256), 32, shuffle=True, seed=0), make_loader(_data(128, seed=1), 64, shuffle=False)


def _trained_teacher(**kwargs):
    teacher = _net(seed=1, **kwargs)
    fit(Supervised(teacher), *_loaders(), SETTINGS)
    return teacher


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


# --- early-stopped KD (Cho & Hariharan 2019) -------------------------------------------------------------------


def test_until_epoch_switches_a_term_off_from_that_epoch_on():
    kd, ce = build_terms([{"name": "kd", "T": 4, "until_epoch": 3}, {"name": "ce"}])
    assert [kd.factor(e) for e in range(7)] == [1, 1, 1, 0, 0, 0, 0]
    assert [kd.active(e) for e in range(7)] == [True] * 3 + [False] * 4
    assert [ce.factor(e) for e in range(7)] == [1] * 7 and ce.until_epoch is None


def test_until_epoch_multiplies_the_warmup_ramp():
    dkd, _ = build_terms([{"name": "dkd", "warmup_epochs": 4, "until_epoch": 6}, {"name": "ce"}])
    assert [dkd.factor(e) for e in range(9)] == [0.25, 0.5, 0.75, 1, 1, 1, 0, 0, 0]
    logits, target = torch.randn(5, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 0, 1])
    out = {"logits": logits}
    for epoch in range(9):  # the weighted value is weight * ramp * on * raw (float32 arithmetic)
        weighted, raw = dkd(out, {"logits": logits.flip(0)}, target, epoch)
        torch.testing.assert_close(weighted, raw * dkd.factor(epoch), rtol=1e-6, atol=0.0)


@pytest.mark.parametrize("value", [0, -2, 1.5, True, "3"])
def test_until_epoch_must_be_a_whole_number_from_1(value):
    with pytest.raises(ConfigError) as err:
        build_terms([{"name": "kd", "until_epoch": value}, {"name": "ce"}])
    assert "until_epoch" in _one_line(err) and "'kd'" in str(err.value)


def test_until_epoch_on_every_term_is_refused_up_front(tmp_path):
    with pytest.raises(ConfigError) as err:
        build_terms([{"name": "kd", "until_epoch": 2}])
    assert "{name: ce}" in _one_line(err)
    raw = {"output_dir": str(tmp_path), "teacher": {"name": "mlp"}, "student": {"name": "mlp"},
           "distill": {"losses": [{"name": "kd", "until_epoch": 2}, {"name": "ce", "until_epoch": 3}]}}
    with pytest.raises(ConfigError, match="until_epoch"):
        parse_config(raw)
    assert parse_config({**raw, "distill": {"losses": [{"name": "kd", "until_epoch": 2}, {"name": "ce"}]}})


def test_after_until_epoch_the_student_trains_on_ce_alone():
    teacher = _trained_teacher()
    student = _net(hidden=8, bn=False, seed=3)  # no BatchNorm: the reference forward below changes nothing
    scheme = OfflineDistillation(student, teacher, build_terms([{"name": "kd", "T": 4, "until_epoch": 1},
                                                                {"name": "ce"}]))
    teacher_calls = []
    teacher.register_forward_hook(lambda *_: teacher_calls.append(current["epoch"]))
    current, compared = {"epoch": 0}, []  # fit's first probe of both models comes in epoch 0
    losses = scheme.losses

    def checked(x, y, epoch, index=None):
        current["epoch"] = epoch
        weighted, raw, logits = losses(x, y, epoch, index)
        params = list(student.parameters())
        got = torch.autograd.grad(sum(weighted.values()), params, retain_graph=True)
        ce_alone = torch.autograd.grad(F.cross_entropy(student(x), y), params)
        same = all(torch.allclose(a, b, rtol=1e-6, atol=1e-8) for a, b in zip(got, ce_alone, strict=True))
        compared.append((epoch, same, set(weighted)))
        return weighted, raw, logits

    scheme.losses = checked
    result = fit(scheme, make_loader(_data(256), 32, shuffle=True, seed=0), None, SETTINGS)
    first = [c for c in compared if c[0] == 0]
    later = [c for c in compared if c[0] >= 1]
    assert first and all(not same and terms == {"kd", "ce"} for _, same, terms in first)  # KD still acts
    assert later and all(same and terms == {"ce"} for _, same, terms in later)  # then exactly CE's gradient
    assert teacher_calls and set(teacher_calls) == {0}  # no teacher forward once no remaining term needs one
    assert "train_kd" in result.history[0] and "train_kd" not in result.history[1]  # a stopped term is not logged


# --- teacher-near initialisation (Stanton et al. 2021) -----------------------------------------------------------


def _pair():
    teacher = _trained_teacher()
    teacher[1].num_batches_tracked.fill_(7)
    student = _net(seed=5)  # the teacher's architecture, its own random start
    return student, teacher


def test_lam_0_leaves_the_student_and_lam_1_copies_the_teacher():
    student, teacher = _pair()
    before, teacher_before = _state(student), _state(teacher)
    teacher_near_init(student, teacher, 0.0)
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())
    teacher_near_init(student, teacher, 1.0)
    for key, value in student.state_dict().items():
        expected = before[key] if key.endswith("num_batches_tracked") else teacher_before[key]
        assert torch.equal(value, expected), key
    assert all(torch.equal(teacher_before[k], v) for k, v in teacher.state_dict().items())  # teacher untouched


def test_lam_interpolates_every_float_tensor_elementwise():
    student, teacher = _pair()
    s, t = _state(student), _state(teacher)
    teacher_near_init(student, teacher, 0.3)
    after = student.state_dict()
    assert {"1.running_mean", "1.running_var"} <= set(after)  # BatchNorm statistics are interpolated too
    for key, value in after.items():
        if key.endswith("num_batches_tracked"):
            assert value.item() == 0  # an integer buffer stays the student's
        else:
            torch.testing.assert_close(value, 0.3 * t[key] + 0.7 * s[key], rtol=1e-6, atol=1e-7)
    assert all(p.requires_grad for p in student.parameters())


def test_a_tied_weight_is_interpolated_once():
    class Tied(nn.Module):
        def __init__(self, value):
            super().__init__()
            self.a, self.b = nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False)
            self.b.weight = self.a.weight
            nn.init.constant_(self.a.weight, value)

    student = teacher_near_init(Tied(0.0), Tied(1.0), 0.5)
    assert torch.equal(student.b.weight, torch.full((2, 2), 0.5))


@pytest.mark.parametrize("lam", [-0.1, 1.5, float("nan")])
def test_lam_outside_0_1_is_a_value_error(lam):
    with pytest.raises(ValueError) as err:
        teacher_near_init(_net(seed=5), _net(seed=1), lam)
    assert "0 <= lam <= 1" in _one_line(err)


@pytest.mark.parametrize(("student", "words"), [
    (dict(hidden=32), "'0.weight' has shape (32, 8) in the student and (16, 8) in the teacher"),
    (dict(bn=False), "'2.weight' is in the student but not in the teacher"),
])
def test_another_architecture_is_one_line_naming_the_first_difference(student, words):
    with pytest.raises(ModelError) as err:
        teacher_near_init(_net(**student), _net(), 0.5)
    assert words in _one_line(err) and "teacher's architecture" in str(err.value)


@pytest.mark.parametrize("scheme", ["offline", "born_again"])
def test_a_student_of_another_architecture_fails_before_training(tmp_path, scheme):
    raw = mnist1d_config(tmp_path, {"name": scheme}, init_from_teacher=0.5)  # a CNN teacher, an MLP student
    with pytest.raises(ModelError) as err:
        run(parse_config(raw))
    assert "teacher-near initialisation" in _one_line(err)
    assert not (tmp_path / "run" / "checkpoints" / "teacher.last.safetensors").exists()
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("distill", "words"), [
    ({"scheme": {"name": "mutual"}, "init_from_teacher": 0.5}, ["init_from_teacher", "mutual"]),
    ({"scheme": {"name": "assistants", "assistants": [{"name": "mlp"}]}, "init_from_teacher": 0.5},
     ["init_from_teacher", "assistants"]),
    ({"init_from_teacher": 0.0}, ["distill.init_from_teacher"]),
    ({"init_from_teacher": 1.2}, ["distill.init_from_teacher"]),
])
def test_init_from_teacher_config_errors(tmp_path, distill, words):
    raw = mnist1d_config(tmp_path)
    raw["distill"] = distill
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert all(w in _one_line(err) for w in words), str(err.value)


def test_the_pipeline_starts_only_the_distilled_student_near_the_trained_teacher(tmp_path, monkeypatch):
    raw = mnist1d_config(tmp_path, init_from_teacher=0.3)
    raw["student"] = raw["teacher"]  # the same architecture (with BatchNorm), built from another seed
    cfg = parse_config(raw)
    starts = {}

    def recording(real):
        def wrapped(scheme, *args, **kwargs):
            starts[args[4] if len(args) > 4 else kwargs.get("name")] = _state(scheme.student)
            return real(scheme, *args, **kwargs)
        return wrapped

    monkeypatch.setattr(kdkit.schemes.plan, "fit", recording(kdkit.schemes.plan.fit))
    pipeline = kdkit.families.classification.pipeline
    monkeypatch.setattr(pipeline, "fit", recording(pipeline.fit))
    run(cfg, quick_cost=True)
    random_start = build_student(cfg, build_data(cfg.data, cfg.seed)).state_dict()
    teacher = load_file(tmp_path / "run" / "models" / "teacher.safetensors")
    assert all(torch.equal(v, random_start[k]) for k, v in starts["student_alone"].items())  # the comparison row
    kd_start = starts["student_kd"]
    assert kd_start.keys() == random_start.keys()
    for key, value in kd_start.items():
        if key.endswith("num_batches_tracked"):
            assert torch.equal(value, random_start[key])
        else:
            torch.testing.assert_close(value, 0.3 * teacher[key] + 0.7 * random_start[key], rtol=1e-5, atol=1e-6)


# --- born-again networks (Furlanello et al. 2018) ----------------------------------------------------------------


def test_each_generation_is_distilled_from_the_one_before():
    teacher = _trained_teacher(hidden=32)
    chained = [_net(hidden=8, seed=s) for s in (2, 3, 4)]
    results = distill_born_again(teacher, chained, KD, *_loaders(), SETTINGS)
    assert len(results) == 3

    by_hand = [_net(hidden=8, seed=s) for s in (2, 3, 4)]
    mentor = teacher
    for pupil in by_hand:
        scheme = OfflineDistillation(pupil, mentor, build_terms(KD))
        fit(scheme, *_loaders(), SETTINGS)
        scheme.close()
        mentor = pupil
    for a, b in zip(chained, by_hand, strict=True):
        for (key, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(va, vb), key


def test_one_generation_is_plain_offline_distillation():
    teacher = _trained_teacher()
    a, b = _net(hidden=8, seed=3), _net(hidden=8, seed=3)
    distill_born_again(teacher, [a], KD, *_loaders(), SETTINGS)
    scheme = OfflineDistillation(b, teacher, build_terms(KD))
    fit(scheme, *_loaders(), SETTINGS)
    assert all(torch.equal(va, vb) for va, vb in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_init_from_teacher_starts_each_generation_at_its_own_trained_teacher(tmp_path, monkeypatch):
    teacher = _trained_teacher()
    gens = [_net(seed=2), _net(seed=3)]
    starts, real = {}, kdkit.schemes.assistants.fit

    def recording(scheme, *args, **kwargs):
        starts[args[4]] = _state(scheme.student)
        return real(scheme, *args, **kwargs)

    monkeypatch.setattr(kdkit.schemes.assistants, "fit", recording)
    teacher_state = _state(teacher)
    distill_born_again(teacher, gens, KD, *_loaders(), SETTINGS.model_copy(update={"epochs": 1}), run_dir=tmp_path,
                       init_from_teacher=1.0)
    assert set(starts) == {"student_kd_gen1", "student_kd"}  # checkpoints are named by generation
    gen1_final = load_file(tmp_path / "checkpoints" / "student_kd_gen1.best.safetensors")
    for key, value in starts["student_kd_gen1"].items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(value, teacher_state[key]), key
            assert torch.equal(starts["student_kd"][key], gen1_final[key]), key
    with pytest.raises(ModelError, match="teacher's architecture"):  # checked before generation 1 trains
        distill_born_again(teacher, [_net(seed=2), _net(hidden=4, seed=3)], KD, *_loaders(), SETTINGS,
                           init_from_teacher=0.5)


def test_born_again_bad_input_is_one_line(tmp_path):
    teacher = _net(seed=1)
    with pytest.raises(ConfigError, match="at least one generation"):
        distill_born_again(teacher, [], KD, *_loaders(), SETTINGS)
    with pytest.raises(ConfigError, match="list of models"):
        distill_born_again(teacher, _net(seed=2), KD, *_loaders(), SETTINGS)
    for scheme, words in [({"name": "offline", "generations": 3}, ["generations", "born_again", "offline"]),
                          ({"name": "assistants", "assistants": [{"name": "mlp"}], "generations": 3},
                           ["generations", "born_again"]),
                          ({"name": "born_again", "generations": 0}, ["distill.scheme.generations"]),
                          ({"name": "born_again", "assistants": [{"name": "mlp"}]}, ["assistants", "born_again"])]:
        with pytest.raises(ConfigError) as err:
            parse_config(mnist1d_config(tmp_path, scheme))
        assert all(w in _one_line(err) for w in words), str(err.value)
    with pytest.raises(ConfigError, match="cache_teacher"):
        parse_config(mnist1d_config(tmp_path, {"name": "born_again"}, cache_teacher=True))


def test_born_again_runs_saves_earlier_generations_and_reevaluates(tmp_path):
    result = run(parse_config(mnist1d_config(tmp_path, {"name": "born_again", "generations": 2})), quick_cost=True)
    assert [r["role"] for r in result.rows] == ["teacher", "student_alone", "student_kd"]
    run_dir = tmp_path / "run"
    models = run_dir / "models"
    assert (models / "gen1.safetensors").is_file() and not (models / "gen2.safetensors").exists()
    names = {p.name for p in (run_dir / "checkpoints").iterdir()}
    assert {"student_kd_gen1.last.safetensors", "student_kd.last.safetensors"} <= names
    gen1, kd = load_file(models / "gen1.safetensors"), load_file(models / "student_kd.safetensors")
    assert gen1.keys() == kd.keys() and any(not torch.equal(gen1[k], kd[k]) for k in kd)  # student-shaped, own model
    rows = evaluate_run(run_dir, quick_cost=True)
    saved = json.loads((run_dir / "results.json").read_text())["rows"]
    assert [r["accuracy"] for r in rows] == [r["accuracy"] for r in saved]
    from kdkit.report import write_report

    assert "scheme born_again" in write_report(run_dir).markdown.read_text()


def test_one_born_again_generation_equals_offline_in_the_pipeline(tmp_path):
    offline = run(parse_config(mnist1d_config(tmp_path / "a")), quick_cost=True)
    born = run(parse_config(mnist1d_config(tmp_path / "b", {"name": "born_again", "generations": 1})), quick_cost=True)
    a = load_file(offline.run_dir / "models" / "student_kd.safetensors")
    b = load_file(born.run_dir / "models" / "student_kd.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list((born.run_dir / "models").glob("gen*"))
