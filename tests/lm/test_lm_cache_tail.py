"""The top-k cache's tail estimators against the full-vocabulary divergence: bucket is a lower bound (data
processing), uniform is exact for a flat teacher tail, sampled is exact for a one-id tail and unbiased (values and
gradients averaged over many draws); all three equal the full loss at k = V, masked ids included. The cache's
tail draws round-trip through disk."""

from __future__ import annotations

import pytest
import torch

from kdkit.errors import ConfigError
from kdkit.lm.cache import TopKCache, _draw_tail, build_topk_cache, topk_tail_divergence
from kdkit.losses import JSD, ForwardKL, ReverseKL, TotalVariation

LOSSES = {"forward_kl": ForwardKL(), "reverse_kl": ReverseKL(), "jsd": JSD(beta=0.5), "tv": TotalVariation()}


def _teacher(logits: torch.Tensor, k: int, samples: int = 0, seed: int = 0) -> dict:
    log_p = torch.log_softmax(logits.float(), -1)
    top, ids = log_p.topk(k, dim=-1)
    out = {"t_logprobs": top, "t_ids": ids, "t_tail": (1 - top.exp().sum(-1)).clamp_min(0)}
    if samples:
        drawn = _draw_tail(log_p, ids, samples, torch.Generator().manual_seed(seed))
        out["samples"] = (drawn, log_p.gather(-1, drawn))
    return out


def _estimate(name: str, student: torch.Tensor, teacher: dict, tail: str) -> torch.Tensor:
    return topk_tail_divergence(LOSSES[name], student, tail=tail, **teacher)


def _pair(seed: int, vocab: int = 40, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, vocab, generator=g) * scale, torch.randn(2, 3, vocab, generator=g) * scale


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_bucket_is_a_lower_bound(name: str, scale: float) -> None:
    for seed in range(3):
        s, t = _pair(seed, scale=scale)
        for k in (1, 4, 16):
            assert _estimate(name, s, _teacher(t, k), "bucket").item() <= LOSSES[name](s, t).item() + 1e-6


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_uniform_is_exact_for_a_flat_teacher_tail(name: str) -> None:
    s, t = _pair(1)
    t[..., 6:] = -1.5  # the teacher's top 6 stand above a flat tail
    t[..., :6] = t[..., :6].abs() + 1.0
    estimate = _estimate(name, s, _teacher(t, 6), "uniform").item()
    assert estimate == pytest.approx(LOSSES[name](s, t).item(), rel=1e-5)
    assert _estimate(name, s, _teacher(t, 6), "bucket").item() < estimate  # the bucket misses the tail's shape


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_sampled_is_exact_when_the_tail_is_one_id(name: str) -> None:
    s, t = _pair(2, vocab=9)
    estimate = _estimate(name, s, _teacher(t, 8, samples=3), "sampled").item()
    assert estimate == pytest.approx(LOSSES[name](s, t).item(), rel=1e-5)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_sampled_is_unbiased(name: str) -> None:
    """With many draws the estimate approaches the full divergence, where the bucket stays below it."""
    s, t = _pair(3, vocab=60)
    full = LOSSES[name](s, t).item()
    teacher = _teacher(t, 5, samples=40_000, seed=1)
    assert _estimate(name, s, teacher, "sampled").item() == pytest.approx(full, rel=0.03)
    assert _estimate(name, s, _teacher(t, 5), "bucket").item() < 0.9 * full


def test_sampled_gradient_is_unbiased_for_forward_kl() -> None:
    s, t = _pair(4, vocab=60)
    s_full = s.clone().requires_grad_(True)
    ForwardKL()(s_full, t).backward()
    s_est = s.clone().requires_grad_(True)
    _estimate("forward_kl", s_est, _teacher(t, 5, samples=40_000, seed=2), "sampled").backward()
    s_bucket = s.clone().requires_grad_(True)
    _estimate("forward_kl", s_bucket, _teacher(t, 5), "bucket").backward()
    error = (s_est.grad - s_full.grad).norm() / s_full.grad.norm()
    assert error < 0.05 < (s_bucket.grad - s_full.grad).norm() / s_full.grad.norm()


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("tail", ["bucket", "uniform", "sampled"])
def test_every_estimator_is_the_full_loss_at_k_equal_v_with_masked_ids(name: str, tail: str) -> None:
    s, t = _pair(5, vocab=12)
    t[..., [2, 9]] = float("-inf")
    s[..., 9] = float("-inf")
    s = s.requires_grad_(True)
    estimate = _estimate(name, s, _teacher(t, 12, samples=2), tail)
    assert estimate.item() == pytest.approx(LOSSES[name](s, t).item(), rel=1e-5)
    if name != "reverse_kl":  # reverse KL is +inf here (student mass on id 2, which the teacher masks)
        estimate.backward()
        assert bool(torch.isfinite(s.grad).all())


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_tail_of_masked_ids_only_adds_nothing(name: str) -> None:
    """k covers every id the teacher does not mask: the tail is masked ids, whose mass is 0 up to float rounding."""
    s, t = _pair(6, vocab=12)
    t[..., [2, 9]] = float("-inf")
    s[..., [2, 9]] = float("-inf")
    s = s.requires_grad_(True)
    full = LOSSES[name](s, t).item()
    for tail in ("bucket", "uniform", "sampled"):
        estimate = _estimate(name, s, _teacher(t, 10, samples=4), tail)
        assert estimate.item() == pytest.approx(full, rel=1e-4, abs=1e-6), tail
        (grad,) = torch.autograd.grad(estimate, s)
        assert bool(torch.isfinite(grad).all()), tail


def test_cache_round_trips_its_tail_draws(tmp_path) -> None:
    torch.manual_seed(0)
    teacher = torch.nn.Sequential(torch.nn.Embedding(30, 8), torch.nn.Linear(8, 30))
    data = [(torch.randint(0, 30, (6,)), torch.randint(0, 30, (6,))) for _ in range(10)]
    info = build_topk_cache(teacher, data, tmp_path / "a", k=4, shard_size=4, tail_samples=5, seed=3)
    build_topk_cache(teacher, data, tmp_path / "b", k=4, shard_size=4, tail_samples=5, seed=3)
    plain = build_topk_cache(teacher, data, tmp_path / "c", k=4, shard_size=4, tail_samples=0)
    assert info.tail_samples == 5 and info.bytes > plain.bytes
    cache, index = TopKCache(tmp_path / "a"), torch.tensor([7, 0, 3])
    drawn, drawn_logprobs = cache.samples(index)
    assert torch.equal(drawn, TopKCache(tmp_path / "b").samples(index)[0])  # seeded
    assert TopKCache(tmp_path / "c").samples(index) is None
    _top, ids, _tail = cache.get(index)
    assert drawn.shape == (3, 6, 5) and not bool((drawn[..., :, None] == ids[..., None, :]).any())
    log_p = torch.log_softmax(teacher(torch.stack([data[i][0] for i in index.tolist()])), -1)
    assert torch.allclose(drawn_logprobs, log_p.detach().gather(-1, drawn), atol=1e-2)


def test_sampled_tail_needs_draws(tmp_path) -> None:
    from kdkit.schemes.topk_cache import TopKCacheDistillation

    teacher = torch.nn.Sequential(torch.nn.Embedding(30, 8), torch.nn.Linear(8, 30))
    rows = [(torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long))]
    build_topk_cache(teacher, rows, tmp_path / "plain", k=3, tail_samples=0)
    with pytest.raises(ConfigError, match="tail: sampled needs a cache built with tail_samples > 0"):
        TopKCacheDistillation(teacher, TopKCache(tmp_path / "plain"), "forward_kl", tail="sampled")
    assert TopKCacheDistillation(teacher, TopKCache(tmp_path / "plain"), "forward_kl").tail == "bucket"
    build_topk_cache(teacher, rows, tmp_path / "drawn", k=3)  # 8 draws by default
    assert TopKCacheDistillation(teacher, TopKCache(tmp_path / "drawn"), "forward_kl").tail == "sampled"
