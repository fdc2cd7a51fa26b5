"""DKD and DIST against computations written here from the papers' formulas (float64 NumPy, explicit loops)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdkit.losses import DIST, DKD, LOSSES, KDLoss, build_loss
from kdkit.terms import build_terms


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.sum(p * np.log(p / q)))


def _dkd_reference(s: np.ndarray, t: np.ndarray, y: np.ndarray, alpha: float, beta: float, T: float) -> float:
    total = 0.0
    for i in range(len(s)):
        ps, pt = _softmax(s[i] / T), _softmax(t[i] / T)
        bs, bt = np.array([ps[y[i]], 1 - ps[y[i]]]), np.array([pt[y[i]], 1 - pt[y[i]]])
        rest = [c for c in range(s.shape[1]) if c != y[i]]
        qs, qt = _softmax(s[i, rest] / T), _softmax(t[i, rest] / T)
        total += alpha * _kl(bt, bs) + beta * _kl(qt, qs)
    return T**2 * total / len(s)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def _dist_reference(s: np.ndarray, t: np.ndarray, beta: float, gamma: float, T: float) -> float:
    ys = np.stack([_softmax(r / T) for r in s])
    yt = np.stack([_softmax(r / T) for r in t])
    inter = np.mean([1 - _pearson(ys[i], yt[i]) for i in range(len(s))])
    intra = np.mean([1 - _pearson(ys[:, c], yt[:, c]) for c in range(s.shape[1])])
    return T**2 * (beta * inter + gamma * intra)


@pytest.fixture
def logits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    s = torch.randn(7, 5, generator=g, dtype=torch.float64) * 2
    t = torch.randn(7, 5, generator=g, dtype=torch.float64) * 3
    y = torch.tensor([0, 1, 2, 3, 4, 0, 2])
    return s, t, y


@pytest.mark.parametrize(("alpha", "beta", "T"), [(1.0, 8.0, 4.0), (0.5, 2.0, 1.0), (0.0, 1.0, 2.0)])
def test_dkd_matches_the_formula(logits, alpha, beta, T):
    s, t, y = logits
    got = DKD(alpha, beta, T)(s, t, y).item()
    assert got == pytest.approx(_dkd_reference(s.numpy(), t.numpy(), y.numpy(), alpha, beta, T), rel=1e-9)


def test_dkd_decomposes_hinton_kd(logits):
    # the paper's identity: KD = TCKD + (1 - p^t_y) NCKD, checked per sample with KDLoss (a separate implementation)
    s, t, y = logits
    T = 3.0
    for i in range(len(s)):
        p_target = torch.softmax(t[i] / T, dim=0)[y[i]].item()
        dkd = DKD(alpha=1.0, beta=1.0 - p_target, T=T)(s[i : i + 1], t[i : i + 1], y[i : i + 1])
        kd = KDLoss(T=T)(s[i : i + 1], t[i : i + 1])
        assert dkd.item() == pytest.approx(kd.item(), rel=1e-9)


def test_dkd_unlabelled_rows_take_the_teachers_class(logits):
    s, t, y = logits
    hidden = y.clone()
    hidden[[1, 4]] = -1
    expected = y.clone()
    expected[[1, 4]] = t[[1, 4]].argmax(dim=1)
    assert DKD()(s, t, hidden).item() == pytest.approx(DKD()(s, t, expected).item(), rel=1e-12)
    assert DKD()(s, t, None).item() == pytest.approx(DKD()(s, t, t.argmax(dim=1)).item(), rel=1e-12)


def test_dkd_warms_up_over_20_epochs_unless_configured():
    default, custom = build_terms([{"name": "dkd"}, {"name": "dkd", "warmup_epochs": 5}])
    assert default.warmup_epochs == 20 and custom.warmup_epochs == 5
    assert default.ramp(0) == pytest.approx(1 / 20) and default.ramp(19) == 1.0 and custom.ramp(4) == 1.0
    assert build_terms([{"name": "kd"}])[0].warmup_epochs == 0


@pytest.mark.parametrize(("beta", "gamma", "T"), [(1.0, 1.0, 1.0), (2.0, 0.5, 4.0)])
def test_dist_matches_the_formula(logits, beta, gamma, T):
    s, t, _ = logits
    got = DIST(beta, gamma, T)(s, t).item()
    assert got == pytest.approx(_dist_reference(s.numpy(), t.numpy(), beta, gamma, T), rel=1e-6)


def test_dist_is_zero_for_matching_predictions_and_large_for_reversed_ones():
    t = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))  # not the global stream
    assert DIST()(t.clone(), t).item() == pytest.approx(0.0, abs=1e-6)  # 1e-8 in the correlation's denominator
    assert DIST(beta=1.0, gamma=0.0)(-t, t).item() > 0.5


@pytest.mark.parametrize("name", ["dkd", "dist"])
def test_response_losses_are_registered_and_differentiable(name, logits):
    s, t, y = logits
    s = s.clone().requires_grad_(True)
    loss = build_loss(name)
    assert isinstance(loss, LOSSES[name])
    loss(s, t, y).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


@pytest.mark.parametrize(("name", "kwargs"), [("dkd", {"T": 0}), ("dkd", {"beta": -1}), ("dist", {"T": -2})])
def test_bad_arguments_fail_as_config_errors(name, kwargs):
    from kdkit.errors import ConfigError

    with pytest.raises(ConfigError, match=name):
        build_loss(name, **kwargs)
