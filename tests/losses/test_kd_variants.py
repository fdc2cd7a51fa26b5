"""kd's two options against their papers: logit standardization (Sun et al. 2024: z-score each row of logits, then
the base temperature) and CTKD's curriculum temperature (Li et al. 2023: a learnt temperature behind a gradient
reversal layer whose lambda follows a cosine curriculum)."""

import math

import pytest
import torch
from toy import toy_data, toy_net

from kdkit.errors import ConfigError
from kdkit.families.classification.config import parse_config
from kdkit.families.classification.tune import check_space, trial_config
from kdkit.losses import KDLoss
from kdkit.losses.curriculum_temperature import curriculum_lambda, reverse_gradient
from kdkit.schemes import OfflineDistillation
from kdkit.terms import build_terms
from kdkit.trainer.loop import fit
from kdkit.trainer.settings import TrainSettings


def _zscore(row: list[float], T: float) -> list[float]:
    """Sun et al. 2024, Algorithm 1: (z - mean) / std / T, std with 1/K."""
    mean = sum(row) / len(row)
    std = math.sqrt(sum((v - mean) ** 2 for v in row) / len(row))
    return [(v - mean) / std / T for v in row]


def _log_softmax(row: list[float]) -> list[float]:
    top = max(row)
    log_sum = top + math.log(sum(math.exp(v - top) for v in row))
    return [v - log_sum for v in row]


def _reference(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, T: float, alpha: float) -> float:
    """alpha * CE(raw student logits, y) + (1 - alpha) * T^2 * mean_i KL(q(Z(t_i; T)) || q(Z(s_i; T))), by loops."""
    soft = hard = 0.0
    for i in range(len(s)):
        log_ps = _log_softmax(_zscore(s[i].tolist(), T))
        log_pt = _log_softmax(_zscore(t[i].tolist(), T))
        soft += sum(math.exp(b) * (b - a) for a, b in zip(log_ps, log_pt, strict=True))
        hard -= _log_softmax(s[i].tolist())[int(y[i])]
    return alpha * hard / len(s) + (1 - alpha) * T * T * soft / len(s)


def _logits(n: int = 7, c: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, c, generator=g, dtype=torch.float64) * 2
    t = torch.randn(n, c, generator=g, dtype=torch.float64) * 5 + 3
    return s, t, torch.randint(0, c, (n,), generator=g)


@pytest.mark.parametrize("T,alpha", [(1.0, 0.0), (2.0, 0.0), (2.0, 0.1), (3.0, 0.5), (4.0, 1.0)])
def test_standardized_kd_equals_the_papers_formula(T, alpha):
    s, t, y = _logits()
    got = KDLoss(T=T, alpha=alpha, standardize=True)(s, t, y).item()
    assert got == pytest.approx(_reference(s, t, y, T, alpha), rel=1e-10, abs=1e-12)


def test_standardized_kd_ignores_each_rows_shift_and_scale_but_plain_kd_does_not():
    s, t, y = _logits()
    shift = torch.randn(len(t), 1, dtype=torch.float64) * 10
    scale = torch.rand(len(t), 1, dtype=torch.float64) * 5 + 0.2
    loss = KDLoss(T=2.0, standardize=True)
    assert loss(s, t * scale + shift, y).item() == pytest.approx(loss(s, t, y).item(), rel=1e-9)
    assert loss(s * 3 - 1, t, y).item() == pytest.approx(loss(s, t, y).item(), rel=1e-9)
    plain = KDLoss(T=2.0)
    assert plain(s, t * scale + shift, y).item() != pytest.approx(plain(s, t, y).item(), rel=1e-3)


def test_standardized_kd_gradients_pass_gradcheck_and_equal_rows_stay_finite():
    s, t, y = _logits(n=4, c=5)
    loss = KDLoss(T=2.0, alpha=0.3, standardize=True)
    assert torch.autograd.gradcheck(lambda a: loss(a, t, y), (s.clone().requires_grad_(True),))
    flat = torch.zeros(3, 5, requires_grad=True)  # an untrained head: std 0, uniform targets, no NaN
    value = KDLoss(T=2.0, standardize=True)(flat, torch.randn(3, 5))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(flat.grad).all()


def test_gradient_reversal_is_identity_forward_and_minus_lambda_backward():
    x = torch.randn(5, requires_grad=True)
    w = torch.randn(5)
    y = reverse_gradient(x, 0.7)
    assert torch.equal(y, x)
    (y * w).sum().backward()
    assert torch.allclose(x.grad, -0.7 * w)


def test_curriculum_lambda_follows_the_papers_cosine_schedule():
    E, top = 10, 0.8
    for epoch in range(15):
        n = min(epoch + 1, E)  # epochs counted from 1 in the paper's loop
        expected = 0.5 * top * (1 + math.cos((1 + n / E) * math.pi))
        assert curriculum_lambda(epoch, E, top) == pytest.approx(expected, abs=1e-15)
    values = [curriculum_lambda(e, E, top) for e in range(E)]
    assert values == sorted(values) and values[0] < 0.03 * top  # rising from lambda_min = 0 ...
    assert values[-1] == pytest.approx(top) and curriculum_lambda(40, E, top) == pytest.approx(top)  # ... to max


def _ctkd_reference(theta: torch.Tensor, s: torch.Tensor, t: torch.Tensor, alpha: float, T_min: float,
                    T_range: float) -> torch.Tensor:
    tau = T_min + T_range * torch.sigmoid(theta)
    log_ps, log_pt = torch.log_softmax(s / tau, 1), torch.log_softmax(t / tau, 1)
    return (1 - alpha) * tau**2 * (log_pt.exp() * (log_pt - log_ps)).sum(1).mean()


@pytest.mark.parametrize("epoch", [0, 3, 12])
def test_ctkd_temperature_starts_at_T_and_its_gradient_is_reversed_and_scaled_by_lambda(epoch):
    s, t, _ = _logits()
    loss = KDLoss(T=4.0, curriculum_T=True, T_min=1.0, T_range=20.0, curriculum_epochs=10).double()
    loss.set_epoch(epoch)
    tau = loss.temperature()
    assert tau == pytest.approx(4.0, rel=1e-6)  # theta is stored in float32
    student = s.clone().requires_grad_(True)
    value = loss(student, t)
    assert value.item() == pytest.approx(KDLoss(T=tau)(s, t).item(), rel=1e-12)  # at the start: KD at T
    value.backward()
    theta = loss.curriculum.theta.detach().clone().requires_grad_(True)
    reference = _ctkd_reference(theta, s, t, 0.0, 1.0, 20.0)
    (d_theta,) = torch.autograd.grad(reference, theta)
    lam = curriculum_lambda(epoch, 10, 1.0)
    assert loss.curriculum.theta.grad.item() == pytest.approx(-lam * d_theta.item(), rel=1e-10)
    plain_student = s.clone().requires_grad_(True)
    KDLoss(T=tau)(plain_student, t).backward()  # the student's own gradient is not reversed
    assert torch.allclose(student.grad, plain_student.grad, rtol=1e-10)


def test_a_step_on_the_ctkd_temperature_makes_the_kd_term_larger():
    s, t, _ = _logits()
    s, t = s.float(), t.float()
    loss = KDLoss(T=4.0, curriculum_T=True, curriculum_epochs=2)
    loss.set_epoch(5)  # lambda = lambda_max
    before = loss.temperature()
    loss(s, t).backward()
    torch.optim.SGD(loss.parameters(), lr=0.5).step()  # descent on the reversed gradient: ascent on the KD term
    after = loss.temperature()
    assert after != before
    assert KDLoss(T=after)(s, t).item() > KDLoss(T=before)(s, t).item()


def test_ctkd_temperature_trains_with_the_student_and_is_saved_with_its_extras():
    data = toy_data(n=128)
    terms = build_terms([{"name": "kd", "T": 4.0, "curriculum_T": True, "curriculum_epochs": 2}, {"name": "ce"}])
    kd = terms[0].loss
    scheme = OfflineDistillation(toy_net(seed=0), toy_net(seed=1), terms)
    assert any(p is kd.curriculum.theta for p in scheme.parameters())  # in the optimizer, like an adapter
    before = kd.temperature()
    fit(scheme, torch.utils.data.DataLoader(data, batch_size=32), None,
        TrainSettings(epochs=2, lr=0.05, optimizer="sgd", weight_decay=0.0, progress=False))
    assert kd.temperature() != before
    assert any(k.endswith("curriculum.theta") for k in scheme.extras.state_dict())


def test_ctkd_starting_at_an_end_of_its_range_starts_just_inside_it():
    assert KDLoss(T=1.0, curriculum_T=True).temperature() == pytest.approx(1.0 + 20 * 1e-4, rel=1e-4)
    assert KDLoss(T=21.0, curriculum_T=True).temperature() == pytest.approx(21.0 - 20 * 1e-4, rel=1e-4)


def test_ctkd_with_lambda_max_zero_leaves_the_temperature_alone():
    data = toy_data(n=64)
    terms = build_terms([{"name": "kd", "T": 3.0, "curriculum_T": True, "lambda_max": 0.0}])
    scheme = OfflineDistillation(toy_net(seed=0), toy_net(seed=1), terms)
    fit(scheme, torch.utils.data.DataLoader(data, batch_size=32), None, TrainSettings(epochs=2, progress=False,
                                                                                      weight_decay=0.0))
    assert terms[0].loss.temperature() == pytest.approx(3.0, rel=1e-6)


@pytest.mark.parametrize("spec,words", [
    ({"name": "kd", "curriculum_T": True, "T": 30.0}, "must lie between"),
    ({"name": "kd", "curriculum_T": True, "curriculum_epochs": 0}, "curriculum_epochs"),
    ({"name": "kd", "standardize": "yes"}, "distill.losses.0.standardize"),
])
def test_bad_variant_options_are_one_config_error(spec, words):
    with pytest.raises(ConfigError, match=words):
        build_terms([spec])


def test_both_options_are_config_keys_and_tune_choices():
    raw = {"data": {"name": "mnist1d"}, "teacher": {"name": "mlp"}, "student": {"name": "mlp"},
           "distill": {"losses": [{"name": "kd", "T": 2.0, "standardize": True, "curriculum_T": True}]},
           "tune": {"space": {"distill.losses.kd.standardize": {"choices": [False, True]},
                              "distill.losses.kd.curriculum_T": {"choices": [False, True]},
                              "distill.losses.kd.T": {"low": 1.5, "high": 8.0}}}}
    cfg = parse_config(raw)
    kd = cfg.distill.loss_terms()[0].loss
    assert kd.standardize and kd.curriculum is not None and kd.temperature() == pytest.approx(2.0)
    check_space(cfg)  # every end and choice of the space gives a valid config
    plain = trial_config(raw, {"distill.losses.kd.standardize": False, "distill.losses.kd.curriculum_T": False})
    assert plain.distill.loss_terms()[0].loss.plain
