"""Labels that are not one class per row: the label of a row (or token) that has none, and the labels of a mixed
batch.

UNLABELLED marks unlabelled transfer-set samples, boundary and synthetic inputs, padding positions in sequence
labelling and language modelling. One constant for every module that writes or skips such labels: cross-entropy
ignores it (``ignore_index``), metrics and verdicts leave it out, data sources write it. It is an int below every
class id, so ``y != UNLABELLED`` and a class-range check (``0 <= y < num_classes``) tell the cases apart.

MixedTarget is what the mixing augmentations (kdkit.data.augment) give the losses (kdkit.losses) for hard labels.

This module imports no other kdkit module and loads torch only when a MixedTarget is used, so the data layer and the
losses can both depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import Tensor

UNLABELLED = -1


@dataclass(frozen=True, eq=False)  # tensors: no elementwise ==
class MixedTarget:
    """Labels of a mixed batch: row i is `lam` parts of a sample labelled a[i] and 1 - lam of one labelled b[i].

    A loss on hard labels takes lam * L(a) + (1 - lam) * L(b) (Zhang et al. 2018); -1 still marks an unlabelled
    row in a or b. `lam` is one number for a batch mixed live, or one per row (N,) for replayed views, each mixed
    with its own partner (kdkit.trainer.view_cache)."""

    a: Tensor
    b: Tensor
    lam: float | Tensor

    @property
    def major(self) -> Tensor:
        """The labels with the larger share (a when lam >= 0.5), e.g. for the training accuracy."""
        import torch  # here: this module is imported by layers that must not load torch

        if isinstance(self.lam, torch.Tensor):
            return torch.where(self.lam.to(self.a.device) >= 0.5, self.a, self.b)
        return self.a if self.lam >= 0.5 else self.b

    def to(self, device: torch.device, non_blocking: bool = False) -> MixedTarget:
        import torch

        lam = self.lam.to(device, non_blocking=non_blocking) if isinstance(self.lam, torch.Tensor) else self.lam
        return MixedTarget(self.a.to(device, non_blocking=non_blocking), self.b.to(device, non_blocking=non_blocking),
                           lam)


__all__ = ["UNLABELLED", "MixedTarget"]
