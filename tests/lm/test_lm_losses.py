"""Token-level divergences (forward_kl, reverse_kl, jsd, tv) against an independent float64 computation, with
masking (-1, -100, a mask) and vocabulary chunking giving identical values and gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdkit.errors import ConfigError
from kdkit.losses import JSD, ForwardKL, ReverseKL, TotalVariation, build_loss


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def reference(name: str, s: torch.Tensor, t: torch.Tensor, valid: torch.Tensor, T: float, beta: float = 0.5) -> float:
    """Position by position in float64 numpy, straight from each paper's formula."""
    values = []
    s64, t64 = s.detach().double().numpy(), t.detach().double().numpy()
    for idx in zip(*np.nonzero(valid.numpy()), strict=True):
        p, q = _softmax(t64[idx] / T), _softmax(s64[idx] / T)  # p teacher, q student
        if name == "forward_kl":
            d = T * T * float(np.sum(p * np.log(p / q)))
        elif name == "reverse_kl":
            d = T * T * float(np.sum(q * np.log(q / p)))
        elif name == "jsd":
            m = beta * p + (1 - beta) * q
            d = T * T * float(beta * np.sum(p * np.log(p / m)) + (1 - beta) * np.sum(q * np.log(q / m)))
        else:
            d = 0.5 * float(np.abs(p - q).sum())
        values.append(d)
    return float(np.mean(values))


def _batch(seed: int = 0, n: int = 3, length: int = 5, vocab: int = 37) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, length, vocab, generator=g) * 2
    t = torch.randn(n, length, vocab, generator=g) * 2
    y = torch.randint(0, vocab, (n, length), generator=g)
    y[0, :2] = -1  # a prompt
    y[2, 3:] = -1  # padding
    return s, t, y


LOSSES = {
    "forward_kl": lambda **kw: ForwardKL(**kw),
    "reverse_kl": lambda **kw: ReverseKL(**kw),
    "jsd": lambda **kw: JSD(beta=0.3, **kw),
    "tv": lambda **kw: TotalVariation(**kw),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("T", [1.0, 2.5])
def test_matches_formula_over_unmasked_positions(name: str, T: float) -> None:
    s, t, y = _batch()
    loss = LOSSES[name](T=T)
    value = float(loss(s, t, y))
    assert value == pytest.approx(reference(name, s, t, y >= 0, T, beta=0.3), rel=1e-5, abs=1e-7)
    # the masked positions really are left out: the mean over all positions differs
    assert value != pytest.approx(reference(name, s, t, torch.ones_like(y, dtype=torch.bool), T, beta=0.3),
                                  rel=1e-4)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_minus_100_and_mask_equal_minus_1(name: str) -> None:
    s, t, y = _batch(seed=1)
    loss = LOSSES[name]()
    hf = y.clone()
    hf[hf == -1] = -100
    a, b, c = loss(s, t, y), loss(s, t, hf), loss(s, t, None, mask=y >= 0)
    assert float(a) == float(b) == float(c)
    # padding content does not matter
    s2 = s.clone()
    s2[y < 0] = 1e3 * torch.randn_like(s2[y < 0])
    assert float(loss(s2, t, y)) == pytest.approx(float(a), rel=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("chunk", [1, 8, 10, 36])
def test_vocabulary_chunks_give_identical_values_and_gradients(name: str, chunk: int) -> None:
    s, t, y = _batch(seed=2)
    s_full, s_chunk = s.clone().requires_grad_(True), s.clone().requires_grad_(True)
    full = LOSSES[name](T=2.0)(s_full, t, y)
    chunked = LOSSES[name](T=2.0, chunk_size=chunk)(s_chunk, t, y)
    assert float(chunked.detach()) == pytest.approx(float(full.detach()), rel=1e-5, abs=1e-7)
    full.backward()
    chunked.backward()
    assert torch.allclose(s_full.grad, s_chunk.grad, atol=1e-6)
    assert s_full.grad[y < 0].abs().max() == 0  # no gradient through masked positions
    assert s_full.grad[y >= 0].abs().max() > 0


def test_zero_at_equality_and_known_extremes() -> None:
    s, t, y = _batch(seed=3)
    for name, make in LOSSES.items():
        assert float(make()(s, s, y)) == pytest.approx(0.0, abs=1e-6), name
    # disjoint one-hot-like distributions: TV -> 1, JSD(0.5) -> log 2
    a = torch.tensor([[[50.0, 0.0]]])
    b = torch.tensor([[[0.0, 50.0]]])
    assert float(TotalVariation()(a, b)) == pytest.approx(1.0, abs=1e-6)
    assert float(JSD(beta=0.5)(a, b)) == pytest.approx(math.log(2), abs=1e-6)


def test_all_masked_batch_gives_zero_with_a_graph() -> None:
    s, t, _ = _batch()
    s.requires_grad_(True)
    out = ForwardKL()(s, t, torch.full(s.shape[:-1], -1))
    out.backward()
    assert float(out.detach()) == 0.0 and s.grad is not None


def test_registered_and_bad_options_are_one_line() -> None:
    assert isinstance(build_loss("jsd", beta=0.5, T=2.0), JSD)
    for name in ("forward_kl", "reverse_kl", "tv"):
        assert build_loss(name, chunk_size=4).chunk_size == 4
    with pytest.raises(ConfigError, match="beta must be strictly between 0 and 1"):
        build_loss("jsd", beta=1.0)
    with pytest.raises(ConfigError, match="chunk_size"):
        build_loss("forward_kl", chunk_size=0)
    with pytest.raises(ConfigError, match="T must be > 0"):
        build_loss("reverse_kl", T=0)
    with pytest.raises(ValueError, match="same shape"):
        ForwardKL()(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5))
