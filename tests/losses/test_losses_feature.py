"""FitNets and attention transfer against the papers' formulas, written out here in NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdkit.errors import ModelError
from kdkit.losses import AttentionTransfer, FitNet, build_loss


def _attention_reference(s: np.ndarray, t: np.ndarray, p: float = 2.0) -> float:
    # Q = channel mean of |A|^p per sample, flattened and L2-normalised; mean squared difference
    total, count = 0.0, 0
    for i in range(len(s)):
        qs = (np.abs(s[i]) ** p).mean(axis=0).ravel()
        qt = (np.abs(t[i]) ** p).mean(axis=0).ravel()
        diff = qs / np.linalg.norm(qs) - qt / np.linalg.norm(qt)
        total += float(diff @ diff)
        count += diff.size
    return total / count


def test_fitnet_is_the_mean_squared_error():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(4, 3, 5, 5, generator=g), torch.randn(4, 3, 5, 5, generator=g)
    expected = float(((s.numpy().astype(np.float64) - t.numpy()) ** 2).sum() / s.numel())
    assert FitNet()(s, t).item() == pytest.approx(expected, rel=1e-5)
    assert FitNet.needs_adapter


def test_fitnet_without_adapter_names_the_fix():
    with pytest.raises(ModelError, match="attach_adapters"):
        FitNet()(torch.randn(2, 8), torch.randn(2, 16))


@pytest.mark.parametrize("shape", [(3, 4, 6, 6), (3, 5, 11), (2, 3, 2, 3, 4)])
@pytest.mark.parametrize("p", [2.0, 1.0])
def test_attention_transfer_matches_the_formula(shape, p):
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(*shape, generator=g, dtype=torch.float64), torch.randn(*shape, generator=g, dtype=torch.float64)
    assert AttentionTransfer(p)(s, t).item() == pytest.approx(_attention_reference(s.numpy(), t.numpy(), p), rel=1e-9)


def test_attention_transfer_ignores_the_channel_count():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(5, 4, 6, 6, generator=g), torch.randn(5, 16, 6, 6, generator=g)
    base = AttentionTransfer()(s, t).item()
    assert base > 0
    # repeating channels changes the width, not the attention map
    assert AttentionTransfer()(s.repeat(1, 3, 1, 1), t).item() == pytest.approx(base, rel=1e-5)
    assert AttentionTransfer()(s, torch.cat([t, t], dim=1)).item() == pytest.approx(base, rel=1e-5)
    # and a student with the teacher's attention but other channels scores 0
    same_map = t.pow(2).mean(dim=1, keepdim=True).sqrt().expand(5, 7, 6, 6)
    assert AttentionTransfer()(same_map, t).item() == pytest.approx(0.0, abs=1e-10)


def test_attention_transfer_resizes_a_larger_student_map():
    g = torch.Generator().manual_seed(4)
    t = torch.randn(3, 8, 4, 4, generator=g)
    upsampled = t.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # 8x8, same attention up to scale
    value = AttentionTransfer()(upsampled, t).item()
    assert np.isfinite(value)
    assert value < AttentionTransfer()(torch.randn(3, 8, 8, 8, generator=g), t).item()


def test_attention_transfer_refuses_vectors():
    with pytest.raises(ModelError, match="feature maps"):
        build_loss("at")(torch.randn(4, 10), torch.randn(4, 10))


def test_feature_losses_send_gradients_to_the_student():
    s = torch.randn(3, 4, 5, 5, requires_grad=True)
    t = torch.randn(3, 4, 5, 5)
    (FitNet()(s, t) + AttentionTransfer()(s, t)).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
