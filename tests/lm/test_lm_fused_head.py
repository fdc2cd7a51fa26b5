"""The fused LM head + divergence equals the plain path (both heads' full logits, then the divergence): values
and gradients of the student's hidden states, head weight and bias, for the four divergences, at several
temperatures, chunk sizes and masks; the teacher receives no gradient."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdkit.losses import JSD, ForwardKL, ReverseKL, TotalVariation
from kdkit.losses.fused_head import fused_head_divergence

LOSSES = {
    "forward_kl": lambda T: ForwardKL(T=T),
    "reverse_kl": lambda T: ReverseKL(T=T),
    "jsd": lambda T: JSD(beta=0.3, T=T),
    "tv": lambda T: TotalVariation(T=T),
}


def _setup(bias: bool, dtype: torch.dtype = torch.float64, seed: int = 0):
    torch.manual_seed(seed)
    student, teacher = nn.Linear(6, 17, bias=bias).to(dtype), nn.Linear(9, 17, bias=True).to(dtype)
    h_s = torch.randn(2, 7, 6, dtype=dtype, requires_grad=True)
    h_t = torch.randn(2, 7, 9, dtype=dtype)
    y = torch.randint(0, 17, (2, 7))
    y[0, :3] = -100  # a prompt
    y[1, 5:] = -1  # padding
    return student, teacher, h_s, h_t, y


def _grads(loss: torch.Tensor, student: nn.Linear, h_s: torch.Tensor) -> list[torch.Tensor]:
    params = [h_s, student.weight] + ([student.bias] if student.bias is not None else [])
    return list(torch.autograd.grad(loss, params))


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("T", [1.0, 2.0])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("chunk", [1, 3, 100])
@pytest.mark.parametrize("recompute", [True, False])
def test_fused_equals_plain(name: str, T: float, bias: bool, chunk: int, recompute: bool) -> None:
    student, teacher, h_s, h_t, y = _setup(bias)
    loss = LOSSES[name](T)
    plain = loss(student(h_s), teacher(h_t), y)
    fused = fused_head_divergence(loss, h_s, student, h_t, teacher, target=y, chunk_size=chunk, recompute=recompute)
    assert fused.item() == pytest.approx(plain.item(), rel=1e-10)
    for a, b in zip(_grads(fused, student, h_s), _grads(plain, student, h_s), strict=True):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


def test_fused_in_float32_and_with_a_weight_tensor_and_mask() -> None:
    student, teacher, h_s, h_t, _y = _setup(True, torch.float32, seed=1)
    mask = torch.rand(2, 7, generator=torch.Generator().manual_seed(0)) > 0.4
    loss = ForwardKL(T=1.5)
    plain = loss(student(h_s), h_t @ teacher.weight.t(), mask=mask)
    fused = fused_head_divergence(loss, h_s, student, h_t, teacher.weight, mask=mask, chunk_size=4, recompute=False)
    assert fused.item() == pytest.approx(plain.item(), rel=1e-5)
    for a, b in zip(_grads(fused, student, h_s), _grads(plain, student, h_s), strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_the_teacher_gets_no_gradient_and_gradcheck_passes() -> None:
    student, teacher, h_s, h_t, y = _setup(True)
    h_t.requires_grad_(True)
    fused = fused_head_divergence(JSD(), h_s, student, h_t, teacher, target=y, chunk_size=2)
    fused.backward()
    assert h_t.grad is None and teacher.weight.grad is None and student.weight.grad is not None
    w, b = student.weight.detach().clone().requires_grad_(True), student.bias.detach().clone().requires_grad_(True)
    h = h_s.detach().clone().requires_grad_(True)
    for recompute in (True, False):
        assert torch.autograd.gradcheck(lambda h, w, b, again=recompute: fused_head_divergence(
            ReverseKL(T=0.8), h, _Head(w, b), h_t.detach(), teacher, target=y, chunk_size=3, recompute=again),
            (h, w, b))


class _Head:
    """A head given as its two tensors (gradcheck perturbs them directly)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        self.weight, self.bias = weight, bias


def test_bfloat16_runs_and_tracks_float32() -> None:
    student, teacher, h_s, h_t, y = _setup(False, torch.float32, seed=2)
    reference = fused_head_divergence(ForwardKL(), h_s, student, h_t, teacher, target=y).item()
    student16, teacher16 = student.to(torch.bfloat16), teacher.to(torch.bfloat16)
    h16 = h_s.detach().to(torch.bfloat16).requires_grad_(True)
    value = fused_head_divergence(ForwardKL(), h16, student16, h_t.to(torch.bfloat16), teacher16, target=y)
    value.backward()
    assert value.item() == pytest.approx(reference, rel=0.05)
    assert h16.grad.dtype == torch.bfloat16 and bool(torch.isfinite(h16.grad.float()).all())


def test_no_valid_position_gives_zero_with_a_graph() -> None:
    student, teacher, h_s, h_t, _y = _setup(True)
    value = fused_head_divergence(ForwardKL(), h_s, student, h_t, teacher, target=torch.full((2, 7), -100))
    value.backward()
    assert value.item() == 0.0 and float(h_s.grad.abs().sum()) == 0.0


def test_outside_autograd_only_the_value_is_computed() -> None:
    student, teacher, h_s, h_t, y = _setup(True)
    with torch.no_grad():
        value = fused_head_divergence(ForwardKL(), h_s, student, h_t, teacher, target=y, chunk_size=3)
        plain = ForwardKL()(student(h_s), teacher(h_t), y)
    assert value.grad_fn is None and value.item() == pytest.approx(plain.item(), rel=1e-10)
