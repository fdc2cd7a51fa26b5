"""Universal Logit Distillation (Boizard et al. 2024, "Towards Cross-Tokenizer Distillation: the Universal Logit
Distillation Loss for LLMs"): distillation between a teacher and a student whose tokenizers differ, so that their
vocabularies cannot be matched id by id. At each aligned position it takes the Wasserstein-1 distance between the
two next-token distributions under a cost of 1 between any two different tokens, in the paper's closed form:
both probability vectors sorted in decreasing order, the shorter padded with zeros to the longer's size |V|,

    W1(p_s, p_t) = sum_{i = 1}^{|V|} | p_s(sigma_s(i)) - p_t(sigma_t(i)) |,   sigma sorts by decreasing probability
    L = mean_{valid positions} W1(softmax(s / T), softmax(t / T))

(the paper's Eq. 5, with the cross-entropy of the student on the data added as a separate `ce` term; its
Eq. 6: L_ULD = CE + lambda * sum_t W1). The loss compares the shapes of the two distributions, not which token
gets which probability: it carries the teacher's confidence, not its choices. Student (..., V_s) and teacher
(..., V_t) logits must already be aligned position by position (kdkit.lm.cross_tokenizer aligns them by text);
V_s and V_t may differ. `top_k` keeps only the k largest probabilities of each side (the rest counted as 0): an
approximation for very large vocabularies.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdkit.losses.registry import LossOptions
from kdkit.losses.token_divergence import token_mask, upcast


def uld_distance(student: Tensor, teacher: Tensor, temperature: float = 1.0, top_k: int | None = None) -> Tensor:
    """W1 between softmax(student / T) and softmax(teacher / T) per row, sorted and zero-padded; shape (...)."""
    p_s = torch.softmax(upcast(student) / temperature, -1)
    p_t = torch.softmax(upcast(teacher) / temperature, -1)
    size = max(p_s.shape[-1], p_t.shape[-1])
    if top_k is not None:
        size = min(size, top_k)
        p_s = p_s.topk(min(top_k, p_s.shape[-1]), -1).values
        p_t = p_t.topk(min(top_k, p_t.shape[-1]), -1).values
    else:
        p_s = p_s.sort(-1, descending=True).values
        p_t = p_t.sort(-1, descending=True).values
    p_s = F.pad(p_s, (0, size - p_s.shape[-1]))
    p_t = F.pad(p_t, (0, size - p_t.shape[-1]))
    return (p_s - p_t).abs().sum(-1)


class ULD(nn.Module):
    """mean over valid positions of the sorted-probability Wasserstein distance; forward(student (..., V_s),
    teacher (..., V_t), target or None, mask or None), valid positions as for the token divergences."""

    per_token = True
    name = "uld"

    def __init__(self, T: float = 1.0, top_k: int | None = None) -> None:
        super().__init__()
        if T <= 0:
            raise ValueError(f"temperature T must be > 0, got {T}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1 (or None: the whole vocabulary), got {top_k}")
        self.T, self.top_k = float(T), top_k

    def forward(self, student: Tensor, teacher: Tensor, target: Tensor | None = None,
                mask: Tensor | None = None) -> Tensor:
        if teacher is None or student.shape[:-1] != teacher.shape[:-1]:
            raise ValueError(f"uld needs student and teacher logits at the same positions, got "
                             f"{tuple(student.shape)} and {tuple(teacher.shape) if teacher is not None else None}")
        valid = token_mask(student, target, mask)
        if not bool(valid.any()):
            return student.sum() * 0.0
        return uld_distance(student[valid], teacher[valid], self.T, self.top_k).mean()


__all__ = ["ULD", "uld_distance"]


class ULDOptions(LossOptions):
    """`{name: uld, ...}` in distill.losses: the keys of :class:`ULD`."""

    name: Literal["uld"] = "uld"
    T: float = 1.0
    top_k: int | None = None
    loss = ULD
