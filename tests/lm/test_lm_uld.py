"""Universal Logit Distillation against its paper's formula (sorted probabilities, the shorter vector padded with
zeros, the sum of absolute differences), its invariances, the alignment of two tokenizations by text, and one
training step of the cross-tokenizer scheme."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdkit.lm.cross_tokenizer import aligned_positions, encode_cross
from kdkit.losses import ULD, build_loss
from kdkit.losses.uld import uld_distance


def paper_w1(student: np.ndarray, teacher: np.ndarray, T: float) -> float:
    """Boizard et al. 2024, Eq. 5: sum_i |p_s(sigma_s(i)) - p_t(sigma_t(i))| with both sorted decreasingly and
    the smaller vocabulary padded with zeros, in float64."""
    def probs(z: np.ndarray) -> np.ndarray:
        e = np.exp(z / T - (z / T).max())
        return e / e.sum()

    p_s, p_t = sorted(probs(student), reverse=True), sorted(probs(teacher), reverse=True)
    size = max(len(p_s), len(p_t))
    p_s, p_t = p_s + [0.0] * (size - len(p_s)), p_t + [0.0] * (size - len(p_t))
    return float(sum(abs(a - b) for a, b in zip(p_s, p_t, strict=True)))


@pytest.mark.parametrize("vocabs", [(7, 7), (5, 12), (12, 5)])
@pytest.mark.parametrize("T", [1.0, 2.0])
def test_matches_the_paper_formula(vocabs: tuple[int, int], T: float) -> None:
    g = torch.Generator().manual_seed(sum(vocabs))
    s, t = torch.randn(4, 3, vocabs[0], generator=g) * 2, torch.randn(4, 3, vocabs[1], generator=g) * 2
    y = torch.randint(0, 5, (4, 3), generator=g)
    y[1, :2] = -100
    want = np.mean([paper_w1(s[i, j].double().numpy(), t[i, j].double().numpy(), T)
                    for i, j in zip(*np.nonzero((y >= 0).numpy()), strict=True)])
    assert ULD(T=T)(s, t, y).item() == pytest.approx(want, rel=1e-5)
    assert build_loss("uld", T=T)(s, t, y).item() == pytest.approx(want, rel=1e-5)


def test_only_the_shape_of_the_distributions_counts() -> None:
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 9, generator=g), torch.randn(6, 11, generator=g)
    value = uld_distance(s, t)
    assert torch.allclose(uld_distance(s[:, torch.randperm(9, generator=g)], t[:, torch.randperm(11, generator=g)]),
                          value)
    assert torch.allclose(uld_distance(s, s[:, torch.randperm(9, generator=g)]), torch.zeros(6), atol=1e-6)
    assert bool((value >= 0).all() and (value <= 2).all())
    assert torch.allclose(uld_distance(s, t, top_k=11), value)  # top_k at the larger vocabulary: exact
    one_hot = torch.full((1, 11), -1e9)
    one_hot[0, 3] = 0.0
    assert uld_distance(one_hot, one_hot[:, :5].roll(2, -1)).item() == pytest.approx(0.0, abs=1e-6)


def test_gradients_reach_the_student() -> None:
    g = torch.Generator().manual_seed(1)
    s = torch.randn(5, 8, generator=g, requires_grad=True)
    ULD()(s, torch.randn(5, 13, generator=g)).backward()
    assert s.grad is not None and bool(torch.isfinite(s.grad).all()) and float(s.grad.abs().sum()) > 0


def test_tokens_are_aligned_by_the_character_they_start_at() -> None:
    # "the cat sat": student "th|e| cat| s|at" starts 0, 2, 3, 7, 9; teacher "the| cat| sat" starts 0, 3, 7
    pairs = aligned_positions([0, 2, 3, 7, 9], [0, 3, 7])
    assert pairs == [(1, 0), (2, 1)]  # " cat" (student token 2, teacher 1) and " s"/" sat" (3 and 2)


def _words(text: str) -> tuple[list[int], list[int]]:
    ids, starts, pos = [], [], 0
    for word in text.split(" "):
        ids.append(3 + len(word) % 5)
        starts.append(pos)
        pos += len(word) + 1
    return ids, starts


def _chars(text: str) -> tuple[list[int], list[int]]:
    return [3 + ord(c) % 7 for c in text], list(range(len(text)))


def test_cross_tokenizer_scheme_trains_the_student_only() -> None:
    from kdkit.lm.cross_tokenizer import CrossTokenizerRows
    from kdkit.models.lm import LMTransformer
    from kdkit.schemes import ULDDistillation

    rows = encode_cross(["the cat sat on the mat", "a dog"], _chars, _words, seq_len=12, teacher_len=6)
    assert isinstance(rows, CrossTokenizerRows) and rows.x.shape == (2, 12) and rows.teacher_x.shape == (2, 6)
    # student position 3 predicts the "c" of "cat" after "the ", as teacher position 0 predicts "cat" after "the";
    # position 2 predicts the space, which starts no teacher token
    assert rows.teacher_position[0, 3].item() == 0 and rows.teacher_position[0, 2].item() == -1
    torch.manual_seed(0)
    student, teacher = LMTransformer(10, 12, 1, 8, 2), LMTransformer(8, 6, 1, 16, 2)
    scheme = ULDDistillation(student, teacher, rows, weight=1.0, ce_weight=0.5)
    weighted, raw, _ = scheme.losses(rows.x, rows.y, 0, index=torch.tensor([0, 1]))
    sum(weighted.values()).backward()
    assert raw["uld"].item() > 0 and all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None for p in student.parameters())
