"""Teacher assistants: the chain is exactly a sequence of offline distillations, each taught by the previous model."""

import pytest
import torch
from toy import toy_data as _data
from toy import toy_net as _net

from kdkit import OfflineDistillation, Supervised, TrainSettings, build_terms, fit
from kdkit.data import make_loader
from kdkit.errors import ConfigError, ModelError
from kdkit.schemes.assistants import distill_through_assistants

SETTINGS = TrainSettings(epochs=3, batch_size=32, lr=1e-2, progress=False, seed=0)
KD = [{"name": "kd", "T": 4.0, "alpha": 0.1}]


def _loaders():
    return make_loader(_data(256), 32, shuffle=True, seed=0), make_loader(_data(128, seed=1), 64, shuffle=False)


def _trained_teacher():
    teacher = _net(hidden=32, seed=1)
    fit(Supervised(teacher), *_loaders(), SETTINGS)
    return teacher


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_chain_equals_offline_distillations_done_one_after_the_other():
    teacher = _trained_teacher()
    chained = [_net(hidden=16, seed=2), _net(hidden=4, seed=3)]
    results = distill_through_assistants(teacher, chained[:1], chained[1], KD, *_loaders(), SETTINGS)
    assert len(results) == 2

    by_hand = [_net(hidden=16, seed=2), _net(hidden=4, seed=3)]
    mentor = teacher
    for pupil in by_hand:
        scheme = OfflineDistillation(pupil, mentor, build_terms(KD))
        fit(scheme, *_loaders(), SETTINGS)
        scheme.close()
        mentor = pupil
    for a, b in zip(chained, by_hand, strict=True):
        for (key, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(va, vb), key


def test_student_learns_from_the_assistant_not_from_the_teacher():
    teacher = _trained_teacher()
    teacher_before = _state(teacher)
    assistant, student = _net(hidden=16, seed=2), _net(hidden=4, seed=3)
    # a student distilled straight from the teacher ends elsewhere than one taught through the assistant
    direct = _net(hidden=4, seed=3)
    scheme = OfflineDistillation(direct, teacher, build_terms(KD))
    fit(scheme, *_loaders(), SETTINGS)
    scheme.close()
    teacher.requires_grad_(True)  # the direct run froze it; the chain must hand it back as it found it
    teacher[0].bias.requires_grad_(False)
    distill_through_assistants(teacher, [assistant], student, KD, *_loaders(), SETTINGS)
    assert not torch.allclose(student[0].weight, direct[0].weight)
    # the teacher is untouched, and the frozen models get their requires_grad flags back
    assert all(torch.equal(teacher_before[k], v) for k, v in teacher.state_dict().items())
    assert [p.requires_grad for p in teacher.parameters()] == [True, False] + [True] * 4
    assert all(p.requires_grad for p in assistant.parameters())
    assert not any(h for m in (teacher, assistant, student) for mod in m.modules() for h in mod._forward_hooks.values())


def test_no_assistant_is_plain_offline_distillation():
    teacher = _trained_teacher()
    a, b = _net(hidden=4, seed=3), _net(hidden=4, seed=3)
    distill_through_assistants(teacher, [], a, KD, *_loaders(), SETTINGS)
    scheme = OfflineDistillation(b, teacher, build_terms(KD))
    fit(scheme, *_loaders(), SETTINGS)
    assert torch.equal(a[0].weight, b[0].weight)


def test_checkpoints_are_named_by_stage(tmp_path):
    teacher = _net(hidden=32, seed=1)
    distill_through_assistants(teacher, [_net(hidden=8, seed=2)], _net(hidden=4, seed=3), KD, *_loaders(),
                               SETTINGS.model_copy(update={"epochs": 1}), run_dir=tmp_path, name="s")
    names = {p.name for p in (tmp_path / "checkpoints").iterdir()}
    assert {"s_assistant1.best.safetensors", "s.best.safetensors"} <= names, names


def test_bad_input_is_one_clear_error():
    teacher, student = _net(seed=1), _net(hidden=4, seed=3)
    with pytest.raises(ConfigError, match="distinct"):
        distill_through_assistants(teacher, [student], student, KD, *_loaders(), SETTINGS)
    with pytest.raises(ConfigError, match="list of models"):
        distill_through_assistants(teacher, _net(seed=2), student, KD, *_loaders(), SETTINGS)
    with pytest.raises(ConfigError, match="no loss terms"):
        distill_through_assistants(teacher, [], student, [], *_loaders(), SETTINGS)
    with pytest.raises(ModelError, match="classes"):  # an assistant with 4 outputs against a 3-class teacher
        distill_through_assistants(teacher, [_net(c=4, seed=2)], student, KD, *_loaders(), SETTINGS)
    with pytest.raises(ModelError, match="nope"):  # a wrong module path fails before any stage trains
        before = _state(student)
        distill_through_assistants(teacher, [_net(seed=2)], student,
                                   [{"name": "fitnet", "student": "nope", "teacher": "1"}], *_loaders(), SETTINGS)
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())
