"""Plain cross-entropy on hard labels, as a term that can be combined with any distillation loss.

    L = -1/N sum_i log softmax(s_i)[y_i]     over labelled rows (label -1 = unlabelled, skipped)
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from kdkit.losses.kd import hard_label_ce
from kdkit.losses.registry import LossOptions


class CrossEntropy(nn.Module):
    """Hard-label cross-entropy; ignores the teacher. Optional label smoothing (Szegedy et al. 2016)."""

    uses_teacher = False
    per_token = True  # (N, L, C) logits against (N, L) labels: the mean over labelled tokens

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, student: Tensor, teacher: Tensor | None = None, target: Tensor | None = None) -> Tensor:
        return hard_label_ce(student, target, self.label_smoothing)


class CrossEntropyOptions(LossOptions):
    """`{name: ce, ...}` in distill.losses: the keys of :class:`CrossEntropy`."""

    name: Literal["ce"] = "ce"
    label_smoothing: float = 0.0
    loss = CrossEntropy
