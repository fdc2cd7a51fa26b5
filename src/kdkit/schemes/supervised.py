"""No teacher: the model learns from hard labels alone (teacher training and the "student alone" baseline)."""

from __future__ import annotations

from torch import Tensor, nn

from kdkit.losses.kd import hard_label_ce
from kdkit.trainer.step import Scheme


class Supervised(Scheme):
    """L = CE(model(x), y), optional label smoothing."""

    def __init__(self, model: nn.Module, label_smoothing: float = 0.0) -> None:
        super().__init__(model)
        self.label_smoothing = label_smoothing

    def losses(self, x: Tensor, y: Tensor | None, epoch: int, index: Tensor | None = None):
        logits = self.student(x)
        ce = hard_label_ce(logits, y, self.label_smoothing)
        return {"ce": ce}, {"ce": ce.detach()}, logits
