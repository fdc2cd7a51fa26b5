"""Multi-teacher distillation: the ensemble's logits, weights, frozen teachers, training, bad input and the cache."""

import pytest
import torch
import torch.nn.functional as F
from toy import toy_data as _data
from toy import toy_net as _net

from kdkit import OfflineDistillation, Supervised, TrainSettings, build_terms, fit
from kdkit.data import Indexed, make_loader
from kdkit.errors import ConfigError, ModelError
from kdkit.schemes.multi_teacher import MultiTeacherDistillation


def _teachers(k=3, c=3):
    # scaled so that the teachers disagree clearly: the combinations then differ measurably from each other
    teachers = [_net(c=c, seed=10 + i).eval() for i in range(k)]
    with torch.no_grad():
        for i, t in enumerate(teachers):
            t[-1].weight.mul_(2.0 + i)
    return teachers


QUIET = {"progress": False}
X = torch.randn(32, 8, generator=torch.Generator().manual_seed(1))
Y = X[:, :3].argmax(1)


def _kd(T=4.0, alpha=0.5):
    return build_terms([{"name": "kd", "T": T, "alpha": alpha}])


def _combined(teachers, **kwargs):
    return MultiTeacherDistillation(_net(hidden=4, seed=0), teachers, _kd(), **kwargs).teacher_outputs(X)["logits"]


def test_probs_combination_is_the_weighted_mean_of_the_teachers_probabilities():
    teachers = _teachers()
    combined = _combined(teachers, weights=[1.0, 2.0, 3.0])
    with torch.no_grad():
        expected = sum(w / 6 * t(X).softmax(1) for w, t in zip([1.0, 2.0, 3.0], teachers, strict=True))
    assert torch.allclose(combined.softmax(1), expected, atol=1e-6)
    # and it is not the softmax of the averaged logits: the two combinations differ
    assert not torch.allclose(_combined(teachers, weights=[1.0, 2.0, 3.0], combine="logits").softmax(1), expected,
                              atol=1e-3)


def test_logits_combination_is_the_weighted_mean_of_the_teachers_logits():
    teachers = _teachers()
    combined = _combined(teachers, weights=[1.0, 2.0, 3.0], combine="logits")
    with torch.no_grad():
        expected = sum(w / 6 * t(X) for w, t in zip([1.0, 2.0, 3.0], teachers, strict=True))
    assert torch.allclose(combined, expected, atol=1e-6)


@pytest.mark.parametrize("combine", ["probs", "logits"])
def test_one_teacher_gives_the_same_kd_loss_as_offline_distillation(combine):
    teacher = _teachers(1)[0]
    student = _net(hidden=4, seed=0)
    multi = MultiTeacherDistillation(student, [teacher], _kd(), combine=combine)
    single = OfflineDistillation(student, teacher, _kd())
    with torch.no_grad():
        assert torch.allclose(multi.teacher_outputs(X)["logits"].softmax(1), teacher(X).softmax(1), atol=1e-6)
    (w_multi, raw_multi, _), (w_single, raw_single, _) = multi.losses(X, Y, 0), single.losses(X, Y, 0)
    assert torch.allclose(w_multi["kd"], w_single["kd"], atol=1e-6)
    assert torch.allclose(raw_multi["kd"], raw_single["kd"], atol=1e-6)


def test_weights_are_normalised():
    teachers = _teachers(2)
    assert MultiTeacherDistillation(_net(), teachers, _kd(), weights=[2, 2]).weights == [0.5, 0.5]
    for combine in ("probs", "logits"):
        a = _combined(teachers, weights=[2.0, 2.0], combine=combine)
        b = _combined(teachers, weights=[1.0, 1.0], combine=combine)
        c = _combined(teachers, combine=combine)  # default: uniform
        assert torch.allclose(a, b, atol=1e-6) and torch.allclose(a, c, atol=1e-6)


@pytest.mark.parametrize("combine", ["probs", "logits"])
def test_a_zero_weight_teacher_has_no_influence(combine):
    first, second, third = _teachers(3)
    with torch.no_grad():
        third[-1].bias.fill_(float("inf"))  # even a teacher with non-finite outputs: weight 0 means left out

    def loss(other):
        scheme = MultiTeacherDistillation(_net(hidden=4, seed=0), [first, other], _kd(), weights=[1, 0],
                                          combine=combine)
        return scheme.losses(X, Y, 0)[0]["kd"]

    a, b, c = loss(second), loss(third), loss(first)
    assert torch.isfinite(a) and torch.equal(a, b) and torch.equal(a, c)
    single = OfflineDistillation(_net(hidden=4, seed=0), first, _kd()).losses(X, Y, 0)[0]["kd"]
    assert torch.allclose(a, single, atol=1e-6)


def test_teachers_stay_frozen_and_bit_identical_after_fit(tmp_path):
    data = _data()
    teachers = [_net(seed=1), _net(hidden=8, seed=2)]
    for t in teachers:
        fit(Supervised(t), make_loader(data, 32, True), None, TrainSettings(epochs=1, **QUIET))
        t.train()  # the user forgot eval(): BatchNorm statistics must still not move
    before = [{k: v.clone() for k, v in t.state_dict().items()} for t in teachers]
    scheme = MultiTeacherDistillation(_net(hidden=4), teachers, _kd())
    teachers[1].train()  # ...even when switched back after the scheme was built: eval() is applied at every step
    fit(scheme, make_loader(data, 32, True), make_loader(data, 64, False), TrainSettings(epochs=2, **QUIET), tmp_path)
    for t, b in zip(teachers, before, strict=True):
        assert all(torch.equal(b[k], v) for k, v in t.state_dict().items())
        assert all(p.grad is None and not p.requires_grad for p in t.parameters())
    assert not any(p is q for p in scheme.parameters() for t in teachers for q in t.parameters())


def test_fit_moves_the_student_towards_the_ensemble():
    data = _data(512)
    teachers = [_net(hidden=32, seed=1), _net(hidden=24, seed=2)]
    for t in teachers:
        fit(Supervised(t), make_loader(data, 32, True), None, TrainSettings(epochs=4, lr=1e-2, **QUIET))
    x = data.tensors[0]
    student = _net(hidden=8, seed=3)
    scheme = MultiTeacherDistillation(student, teachers, build_terms([{"name": "kd", "T": 2}]))

    def kl_to_ensemble():  # KL(ensemble || student), the direction KD minimises
        with torch.no_grad():
            log_ensemble = torch.stack([t.eval()(x).log_softmax(1) for t in teachers]).logsumexp(0) - torch.log(
                torch.tensor(2.0))
            return F.kl_div(student.eval()(x).log_softmax(1), log_ensemble, reduction="batchmean",
                            log_target=True).item()

    before = kl_to_ensemble()
    fit(scheme, make_loader(data, 32, True), None, TrainSettings(epochs=8, lr=1e-2, **QUIET))
    assert kl_to_ensemble() < 0.1 * before  # about 0.02 * before in practice


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"teachers": []}, "needs at least one teacher"),
    ({"weights": [1.0]}, "got 1 teacher weights for 2 teachers"),
    ({"weights": [1.0, -1.0]}, "must be finite, >= 0 and not all zero"),
    ({"weights": [0, 0]}, "must be finite, >= 0 and not all zero"),
    ({"combine": "mean"}, "combine must be one of probs, logits; got 'mean'"),
    ({"teachers": _net()}, "teachers must be a list of models"),
], ids=["no-teachers", "weights-length", "negative-weight", "all-zero-weights", "unknown-combine", "one-model"])
def test_bad_configuration_is_a_one_line_config_error(kwargs, message):
    args = {"teachers": _teachers(2), **kwargs}
    with pytest.raises(ConfigError, match=message) as err:
        MultiTeacherDistillation(_net(), terms=_kd(), **args)
    assert "\n" not in str(err.value)


def test_teachers_with_different_class_counts_fail_on_the_first_batch():
    teachers = [_net(c=3).eval(), _net(c=3).eval(), _net(c=5).eval()]
    scheme = MultiTeacherDistillation(_net(c=3), teachers, _kd())
    with pytest.raises(ModelError, match="teacher 2 predicts 5 classes but teacher 0 predicts 3") as err:
        fit(scheme, make_loader(_data(), 32, True), None, TrainSettings(epochs=1, **QUIET))
    assert "\n" not in str(err.value)


def test_eval_logits_are_the_ensembles():
    teachers = _teachers(2)
    scheme = MultiTeacherDistillation(_net(), teachers, _kd(), weights=[1, 3])
    student_logits, teacher_logits = scheme.eval_logits(X)
    assert student_logits.shape == (32, 3)
    assert torch.allclose(teacher_logits, scheme.teacher_outputs(X)["logits"])


def test_feature_terms_read_the_first_teacher_and_close_removes_the_hooks():
    teachers = [_net(hidden=16, seed=1).eval(), _net(hidden=12, seed=2).eval()]  # features of different widths
    terms = build_terms([{"name": "kd"}, {"name": "fitnet", "student": "0", "teacher": "0"}])
    scheme = MultiTeacherDistillation(_net(hidden=4), teachers, terms)
    assert scheme.attach_adapters(X[:2]) == ["fitnet"]  # the adapter maps the student's 4 to teacher 0's 16
    out = scheme.teacher_outputs(X)
    with torch.no_grad():
        assert torch.equal(out["0"], teachers[0][0](X))
    weighted, _, _ = scheme.losses(X, Y, 0)
    assert set(weighted) == {"kd", "fitnet"} and all(torch.isfinite(v) for v in weighted.values())
    scheme.close()
    assert all(not m._forward_hooks for t in [scheme.student, *teachers] for m in t.modules())


def test_teacher_cache_gives_the_same_training_as_no_cache():
    data = _data()
    teachers = _teachers(2)

    def distil(cache):
        student = _net(hidden=4, seed=0)
        scheme = MultiTeacherDistillation(student, teachers, _kd(alpha=0.0), cache_size=len(data) if cache else None)
        fit(scheme, make_loader(Indexed(data) if cache else data, 32, True), None, TrainSettings(epochs=3, **QUIET))
        return student.state_dict(), scheme

    (plain, _), (cached, scheme) = distil(False), distil(True)
    assert scheme.cache is not None and bool(scheme.cache.filled.all())
    assert all(torch.allclose(plain[k], cached[k], atol=1e-6) for k in plain)
