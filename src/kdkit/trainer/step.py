"""A scheme says who teaches whom in one step. The trainer only sees this interface."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn


class Scheme:
    """One model being trained (`student`), plus whatever produces its training signal.

    Subclasses implement :meth:`losses`; trainable extras (e.g. feature adapters) go in `self.extras`, which are
    optimised with the student and saved apart from it.
    """

    def __init__(self, student: nn.Module) -> None:
        self.student = student
        self.extras = nn.ModuleList()

    def parameters(self) -> Iterator[nn.Parameter]:
        yield from self.student.parameters()
        yield from self.extras.parameters()

    def to(self, device: torch.device) -> Scheme:
        self.student.to(device)
        self.extras.to(device)
        return self

    def train(self, mode: bool = True) -> None:
        self.student.train(mode)
        self.extras.train(mode)

    def losses(
        self, x: Tensor, y: Tensor | None, epoch: int, index: Tensor | None = None
    ) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor]:
        """Returns (weighted terms summed into the loss, raw term values for logging, student logits).

        `index` holds the dataset positions of the batch's samples when the loader provides them (see
        :class:`kdkit.data.Indexed`); schemes may use it to cache per-sample teacher outputs.
        """
        raise NotImplementedError

    @torch.no_grad()
    def eval_logits(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Student logits and, where there is a teacher, the teacher's, for validation metrics."""
        return self.student(x), None
