"""Hinton KD: the value is the formula, the T^2 factor keeps gradients T-independent, KL uses batchmean."""

import math

import pytest
import torch
import torch.nn.functional as F

from kdkit.errors import ConfigError
from kdkit.losses import KDLoss, build_loss, kd_loss


def _by_hand(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None, T: float, alpha: float) -> float:
    """The formula written out with explicit loops, independent of torch's kl_div."""
    n, c = s.shape
    soft = 0.0
    for i in range(n):
        zs = [math.exp(v / T) for v in s[i].tolist()]
        zt = [math.exp(v / T) for v in t[i].tolist()]
        ps = [v / sum(zs) for v in zs]
        pt = [v / sum(zt) for v in zt]
        soft += sum(pt[k] * (math.log(pt[k]) - math.log(ps[k])) for k in range(c))
    soft = soft / n * T * T
    hard = 0.0
    if alpha > 0:
        for i in range(n):
            z = [math.exp(v) for v in s[i].tolist()]
            hard -= math.log(z[int(y[i])] / sum(z))
        hard /= n
    return alpha * hard + (1 - alpha) * soft


@pytest.mark.parametrize("T,alpha", [(1.0, 0.0), (4.0, 0.0), (4.0, 0.1), (2.5, 0.7), (8.0, 1.0)])
def test_value_matches_formula(T, alpha):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 5, generator=g) * 3, torch.randn(6, 5, generator=g) * 3
    y = torch.randint(0, 5, (6,), generator=g)
    got = kd_loss(s.double(), t.double(), y, temperature=T, alpha=alpha).item()
    assert got == pytest.approx(_by_hand(s.double(), t.double(), y, T, alpha), rel=1e-9, abs=1e-12)
    assert KDLoss(T=T, alpha=alpha)(s.double(), t.double(), y).item() == pytest.approx(got, rel=1e-12)


def test_batchmean_not_mean_over_classes():
    s, t = torch.randn(8, 10), torch.randn(8, 10)
    loss = kd_loss(s, t, temperature=1.0)
    log_p, log_q = F.log_softmax(t, 1), F.log_softmax(s, 1)
    elementwise_mean = (log_p.exp() * (log_p - log_q)).mean()  # the 'mean' reduction mistake: divides by N*C
    assert loss.item() == pytest.approx(10 * elementwise_mean.item(), rel=1e-5)  # sum over classes, mean over batch
    # doubling the batch with copies leaves a per-sample average unchanged
    assert kd_loss(torch.cat([s, s]), torch.cat([t, t]), temperature=1.0).item() == pytest.approx(loss.item(), rel=1e-6)


def test_gradient_scale_independent_of_temperature():
    g = torch.Generator().manual_seed(1)
    t = torch.randn(16, 10, generator=g)
    s0 = torch.randn(16, 10, generator=g)

    def grad_norm(T: float, with_t2: bool) -> float:
        s = s0.clone().requires_grad_(True)
        loss = kd_loss(s, t, temperature=T)
        (loss if with_t2 else loss / T**2).backward()
        return s.grad.norm().item()

    ratio_t2 = grad_norm(16.0, True) / grad_norm(8.0, True)
    ratio_plain = grad_norm(16.0, False) / grad_norm(8.0, False)
    assert ratio_t2 == pytest.approx(1.0, abs=0.05)  # with T^2: the same scale at both temperatures
    assert ratio_plain == pytest.approx(0.25, abs=0.02)  # without it the gradient shrinks as 1/T^2


def test_alpha_zero_needs_no_labels_and_alpha_one_is_cross_entropy():
    s, t = torch.randn(4, 3), torch.randn(4, 3)
    y = torch.tensor([0, 2, 1, 1])
    assert torch.isfinite(kd_loss(s, t, None, temperature=4.0, alpha=0.0))
    assert kd_loss(s, t, y, temperature=4.0, alpha=1.0).item() == pytest.approx(F.cross_entropy(s, y).item())


def test_unlabelled_rows_are_left_out_of_the_hard_term():
    s, t = torch.randn(4, 3), torch.randn(4, 3)
    y = torch.tensor([0, -1, 2, -1])
    expected = 0.5 * F.cross_entropy(s[[0, 2]], y[[0, 2]]) + 0.5 * kd_loss(s, t, temperature=2.0)
    assert kd_loss(s, t, y, temperature=2.0, alpha=0.5).item() == pytest.approx(expected.item(), rel=1e-6)
    all_unlabelled = kd_loss(s, t, torch.full((4,), -1), temperature=2.0, alpha=0.5)
    assert all_unlabelled.item() == pytest.approx(0.5 * kd_loss(s, t, temperature=2.0).item(), rel=1e-6)


def test_label_smoothing_applies_to_the_hard_term_only():
    s, t, y = torch.randn(5, 4), torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    got = kd_loss(s, t, y, temperature=3.0, alpha=0.4, label_smoothing=0.1)
    want = 0.4 * F.cross_entropy(s, y, label_smoothing=0.1) + 0.6 * kd_loss(s, t, temperature=3.0)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)


def test_identical_logits_give_zero_soft_loss():
    s = torch.randn(3, 7)
    assert kd_loss(s, s.clone(), temperature=4.0).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("kwargs", [{"alpha": 1.5}, {"T": 0}, {"temperature": 4}])
def test_bad_arguments_give_config_errors(kwargs):
    with pytest.raises(ConfigError, match="kd"):
        build_loss("kd", **kwargs)


def test_unknown_loss_lists_the_registry():
    with pytest.raises(ConfigError, match="unknown loss 'kdd'.*kd"):
        build_loss("kdd")


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_one_node_gradients_pass_gradcheck_for_student_and_teacher(T):
    """The KD term is one autograd node with closed-form gradients; both sides checked against finite
    differences (the teacher side learns in online schemes and data-free generators)."""
    from kdkit.losses.kd import soft_target_kl

    g = torch.Generator().manual_seed(3)
    s = (torch.randn(5, 4, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    t = (torch.randn(5, 4, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: soft_target_kl(a, b, T), (s, t))
    w = torch.rand(5, generator=g, dtype=torch.float64) * 2
    assert torch.autograd.gradcheck(lambda a, b: soft_target_kl(a, b, T, row_weights=w), (s, t))


def test_row_weights_weigh_each_rows_kl():
    from kdkit.losses.kd import soft_target_kl

    g = torch.Generator().manual_seed(6)
    s, t = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    w = torch.tensor([0.0, 2.0, 1.0, 0.5, 0.0, 3.0], dtype=torch.float64)
    rows = torch.stack([soft_target_kl(s[i:i + 1], t[i:i + 1], 2.0) for i in range(6)])
    assert soft_target_kl(s, t, 2.0, row_weights=w).item() == pytest.approx((w * rows).sum().item() / 6, rel=1e-12)
    assert soft_target_kl(s, t, 2.0, row_weights=torch.ones(6)).item() == pytest.approx(
        soft_target_kl(s, t, 2.0).item(), rel=1e-12)


@pytest.mark.parametrize("shape", [(256, 10), (8, 10), (300, 3), (256, 100)])
def test_kd_value_and_gradients_equal_the_composed_ops(shape):
    """The fused term (and the column-wise softmax it uses for few classes on CPU) against kl_div of log_softmax:
    the same value and the same gradients for student and teacher, on shapes that take either softmax path."""
    g = torch.Generator().manual_seed(4)
    s0, t0 = torch.randn(*shape, generator=g) * 3, torch.randn(*shape, generator=g) * 3
    y = torch.randint(0, shape[1], (shape[0],), generator=g)
    s1, t1 = s0.clone().requires_grad_(True), t0.clone().requires_grad_(True)
    kd_loss(s1, t1, y, temperature=2.0, alpha=0.3).backward()
    s2, t2 = s0.clone().requires_grad_(True), t0.clone().requires_grad_(True)
    reference = 0.7 * 4.0 * F.kl_div(F.log_softmax(s2 / 2.0, 1), F.log_softmax(t2 / 2.0, 1), reduction="batchmean",
                                     log_target=True) + 0.3 * F.cross_entropy(s2, y)
    reference.backward()
    assert kd_loss(s0, t0, y, temperature=2.0, alpha=0.3).item() == pytest.approx(reference.item(), rel=1e-5)
    torch.testing.assert_close(s1.grad, s2.grad, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(t1.grad, t2.grad, rtol=1e-4, atol=1e-7)


def test_bf16_logits_get_bf16_gradients_and_a_float32_value():
    s = torch.randn(64, 10).bfloat16().requires_grad_(True)
    loss = kd_loss(s, torch.randn(64, 10).bfloat16(), temperature=4.0)
    loss.backward()
    assert loss.dtype == torch.float32 and s.grad.dtype == torch.bfloat16 and torch.isfinite(s.grad).all()


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_hard_label_ce_equals_cross_entropy_with_unlabelled_rows(smoothing):
    from kdkit.losses.kd import hard_label_ce

    g = torch.Generator().manual_seed(5)
    logits = torch.randn(128, 7, generator=g)
    y = torch.randint(0, 7, (128,), generator=g)
    y[::3] = -1
    expected = F.cross_entropy(logits, y, ignore_index=-1, label_smoothing=smoothing)
    assert hard_label_ce(logits, y, smoothing).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("shape", [(256, 10), (4, 10), (256, 40), (2, 3, 5)])
def test_class_softmax_equals_torch_on_every_path(shape):
    from kdkit.losses.softmax import log_softmax, softmax

    x = torch.randn(*shape) * 5
    torch.testing.assert_close(log_softmax(x), torch.log_softmax(x, -1))
    torch.testing.assert_close(softmax(x), torch.softmax(x, -1))


def test_a_second_derivative_through_kd_is_refused_not_silently_wrong():
    s = torch.randn(4, 3, requires_grad=True)
    (grad,) = torch.autograd.grad(kd_loss(s, torch.randn(4, 3)), s, create_graph=True)
    with pytest.raises(RuntimeError):
        grad.sum().backward()


def test_kd_works_inside_torch_func_transforms():
    """vmap over rows and torch.func.grad give what the one-node path gives outside them."""
    from kdkit.losses.kd import soft_target_kl

    g = torch.Generator().manual_seed(7)
    s, t = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    rows = torch.func.vmap(lambda a, b: soft_target_kl(a[None], b[None], 2.0))(s, t)
    expected = torch.stack([soft_target_kl(s[i:i + 1], t[i:i + 1], 2.0) for i in range(5)])
    torch.testing.assert_close(rows, expected)
    s1 = s.clone().requires_grad_(True)
    kd_loss(s1, t, temperature=2.0).backward()
    torch.testing.assert_close(torch.func.grad(lambda a: kd_loss(a, t, temperature=2.0))(s), s1.grad)
