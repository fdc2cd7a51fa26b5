"""RKD, SP, PKT and FSP against the papers' formulas written out here with explicit loops (float64 NumPy),
and the invariances the methods claim."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from kdkit.errors import ModelError
from kdkit.losses import FSP, PKT, RKDAngle, RKDDistance, SimilarityPreserving


def _huber(a: float, b: float) -> float:
    d = abs(a - b)
    return 0.5 * d * d if d < 1 else d - 0.5


def _rkd_distance_reference(s: np.ndarray, t: np.ndarray) -> float:
    n = len(s)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]

    def psi(x):
        dist = {(i, j): np.linalg.norm(x[i] - x[j]) for i, j in pairs}
        mu = np.mean(list(dist.values()))
        return {k: v / mu for k, v in dist.items()}

    ps, pt = psi(s), psi(t)
    return float(np.mean([_huber(ps[k], pt[k]) for k in pairs]))


def _rkd_angle_reference(s: np.ndarray, t: np.ndarray) -> float:
    def cos(x, i, j, k):
        a, b = x[i] - x[j], x[k] - x[j]
        return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))

    triplets = list(itertools.permutations(range(len(s)), 3))
    return float(np.mean([_huber(cos(s, *ijk), cos(t, *ijk)) for ijk in triplets]))


def _sp_reference(s: np.ndarray, t: np.ndarray) -> float:
    def g(x):
        q = x.reshape(len(x), -1)
        gram = q @ q.T
        return gram / np.linalg.norm(gram, axis=1, keepdims=True)

    n = len(s)
    return float(np.sum((g(s) - g(t)) ** 2) / n**2)


def _pkt_reference(s: np.ndarray, t: np.ndarray) -> float:
    def cond(x):
        x = x.reshape(len(x), -1)
        n = len(x)
        k = np.array([[0.5 * (x[i] @ x[j] / (np.linalg.norm(x[i]) * np.linalg.norm(x[j])) + 1) for j in range(n)]
                      for i in range(n)])
        return np.array([[k[i, j] / sum(k[i, m] for m in range(n) if m != i) if j != i else 0.0
                          for j in range(n)] for i in range(n)])

    ps, pt = cond(s), cond(t)
    n = len(s)
    return float(np.mean([sum(pt[i, j] * np.log(pt[i, j] / ps[i, j]) for j in range(n) if j != i)
                          for i in range(n)]))


def _fsp_reference(s1, s2, t1, t2) -> float:
    def g(f1, f2):
        c1, c2 = f1.shape[0], f2.shape[0]
        hw = f1.shape[1] * f1.shape[2]
        return np.array([[np.sum(f1[a] * f2[b]) / hw for b in range(c2)] for a in range(c1)])

    return float(np.mean([np.sum((g(s1[i], s2[i]) - g(t1[i], t2[i])) ** 2) for i in range(len(s1))]))


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_rkd_distance_matches_the_formula():
    s, t = _randn(6, 5, seed=0), _randn(6, 9, seed=1) * 3  # widths may differ
    assert RKDDistance()(s, t).item() == pytest.approx(_rkd_distance_reference(s.numpy(), t.numpy()), rel=1e-7)


def test_rkd_angle_matches_the_formula():
    s, t = _randn(5, 4, seed=2), _randn(5, 7, seed=3)
    assert RKDAngle()(s, t).item() == pytest.approx(_rkd_angle_reference(s.numpy(), t.numpy()), rel=1e-9)


def test_rkd_huber_switches_to_linear_for_large_differences():
    # one far outlier in the student makes some normalised distances differ by more than 1
    s, t = _randn(6, 3, seed=4), _randn(6, 3, seed=5)
    s[0] += 50
    assert RKDDistance()(s, t).item() == pytest.approx(_rkd_distance_reference(s.numpy(), t.numpy()), rel=1e-7)


def test_rkd_is_invariant_to_feature_scaling():
    s, t = _randn(8, 6, seed=6), _randn(8, 10, seed=7)
    for loss in (RKDDistance(), RKDAngle()):
        base = loss(s, t).item()
        assert base > 0
        assert loss(3.7 * s, 0.02 * t).item() == pytest.approx(base, rel=1e-6)
    assert RKDDistance()(s, 5.0 * s).item() == pytest.approx(0.0, abs=1e-12)


def test_rkd_reads_feature_maps_as_vectors():
    s, t = _randn(5, 2, 3, 3, seed=8), _randn(5, 4, 2, 2, seed=9)
    flat = RKDDistance()(s.flatten(1), t.flatten(1)).item()
    assert RKDDistance()(s, t).item() == pytest.approx(flat, rel=1e-12)


def test_sp_matches_the_formula():
    s, t = _randn(6, 3, 4, 4, seed=10), _randn(6, 8, 2, 2, seed=11)
    assert SimilarityPreserving()(s, t).item() == pytest.approx(_sp_reference(s.numpy(), t.numpy()), rel=1e-9)


def test_sp_is_invariant_to_permuting_the_batch_consistently():
    s, t = _randn(7, 5, seed=12), _randn(7, 9, seed=13)
    perm = torch.tensor([3, 0, 6, 1, 5, 2, 4])
    base = SimilarityPreserving()(s, t).item()
    assert SimilarityPreserving()(s[perm], t[perm]).item() == pytest.approx(base, rel=1e-10)
    assert SimilarityPreserving()(s[perm], t).item() != pytest.approx(base, rel=1e-3)  # only one side: not equal


def test_pkt_matches_the_formula():
    s, t = _randn(6, 5, seed=14), _randn(6, 3, seed=15)
    assert PKT(eps=0.0)(s, t).item() == pytest.approx(_pkt_reference(s.numpy(), t.numpy()), rel=1e-9)
    assert PKT()(s, t).item() == pytest.approx(_pkt_reference(s.numpy(), t.numpy()), rel=1e-4)


def test_pkt_is_zero_for_identical_directions():
    s = _randn(6, 5, seed=16)
    assert PKT()(2.5 * s, s).item() == pytest.approx(0.0, abs=1e-7)  # eps inside the logarithm


def test_fsp_matches_the_formula():
    s1, s2 = _randn(3, 2, 4, 4, seed=17), _randn(3, 5, 4, 4, seed=18)
    t1, t2 = _randn(3, 2, 4, 4, seed=19), _randn(3, 5, 4, 4, seed=20)
    expected = _fsp_reference(*(x.numpy() for x in (s1, s2, t1, t2)))
    assert FSP()((s1, s2), (t1, t2)).item() == pytest.approx(expected, rel=1e-9)


def test_fsp_pools_the_larger_map_to_the_smaller():
    s1, s2 = _randn(2, 3, 8, 8, seed=21), _randn(2, 4, 4, 4, seed=22)
    t1, t2 = _randn(2, 3, 4, 4, seed=23), _randn(2, 4, 4, 4, seed=24)
    pooled = torch.nn.functional.avg_pool2d(s1, 2)
    assert FSP()((s1, s2), (t1, t2)).item() == pytest.approx(FSP()((pooled, s2), (t1, t2)).item(), rel=1e-12)


def test_fsp_needs_two_layers_and_matching_channels():
    with pytest.raises(ModelError, match="two module paths"):
        FSP()(_randn(2, 3, 4, 4, seed=0), _randn(2, 3, 4, 4, seed=1))
    with pytest.raises(ModelError, match="attach adapters"):
        FSP()((_randn(2, 3, 4, 4, seed=0),) * 2, (_randn(2, 5, 4, 4, seed=1),) * 2)


@pytest.mark.parametrize("loss", [RKDDistance(), RKDAngle(), SimilarityPreserving(), PKT()])
def test_relation_losses_send_finite_gradients_to_the_student(loss):
    s = _randn(6, 4, seed=25).requires_grad_(True)
    loss(s, _randn(6, 8, seed=26)).backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
