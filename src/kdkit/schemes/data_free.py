"""Data-free knowledge distillation: the student learns from a frozen teacher without any of its training data
(Yin et al., CVPR 2020, "Dreaming to Distill: Data-free Knowledge Transfer via DeepInversion").

1. :func:`~kdkit.schemes.inversion.synthesize` turns noise into inputs the teacher classifies as chosen classes
   and whose BatchNorm feature statistics match the teacher's running statistics.
2. The student is distilled on those inputs with plain offline KD, alpha = 0:

       L = T^2 * KL( softmax(t / T) || softmax(s / T) )       (Hinton et al. 2015)

The synthetic set carries its target classes as labels, but the loss ignores them: a target class is what the
synthesis asked for, the teacher's output is what it actually answered, and only the latter is knowledge.
(fit's train accuracy then reports how often the student predicts the requested class.)
"""

from __future__ import annotations

from pathlib import Path

from torch import nn
from torch.utils.data import DataLoader, Dataset

from kdkit.errors import DataError
from kdkit.loaders import Indexed, make_loader
from kdkit.losses.kd import DEFAULT_T
from kdkit.schemes.inversion import SyntheticData, synthesize
from kdkit.schemes.offline import OfflineDistillation
from kdkit.settings import TrainSettings
from kdkit.terms import build_terms
from kdkit.trainer import FitResult, fit


def distill_data_free(
    student: nn.Module,
    teacher: nn.Module,
    synthetic: Dataset,
    T: float = DEFAULT_T,
    settings: TrainSettings | None = None,
    val_loader: DataLoader | None = None,
    run_dir: str | Path | None = None,
    name: str = "student",
) -> FitResult:
    """Distil `teacher` into `student` (in place) on `synthetic`, e.g. the output of :func:`synthesize`, with
    KD at temperature `T` and no label term. `synthetic` yields (x, target) or just x. Without `val_loader` (the
    data-free case) the last epoch is kept.

    The synthetic inputs never change, so the teacher's outputs are computed once per sample and cached (not with
    ``settings.augment``, whose views change every epoch)."""
    if len(synthetic) == 0:  # type: ignore[arg-type]
        raise DataError("the synthetic set is empty; call synthesize with num_samples >= 1")
    settings = settings or TrainSettings()
    loader = make_loader(Indexed(synthetic), settings.batch_size, shuffle=True, seed=settings.seed)
    # the teacher's outputs are cached unless train.augment makes a new view of every input each epoch
    cache_size = None if settings.augment else len(synthetic)  # type: ignore[arg-type]
    scheme = OfflineDistillation(student, teacher, build_terms([{"name": "kd", "T": T}]), cache_size=cache_size)
    try:
        return fit(scheme, loader, val_loader, settings, run_dir, name)
    finally:
        scheme.close()


__all__ = ["SyntheticData", "distill_data_free", "synthesize"]
