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

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kdkit.data.loaders import Indexed, make_loader
from kdkit.errors import ConfigError, DataError, ModelError
from kdkit.losses.kd import DEFAULT_T
from kdkit.schemes.inversion import BATCHNORMS, SyntheticData, synthesize
from kdkit.schemes.offline import OfflineDistillation
from kdkit.schemes.plan import PlanInputs, SchemePlan
from kdkit.schemes.registry import DEFAULT_T_RANGE, SchemeOptions
from kdkit.terms import build_terms
from kdkit.trainer.batches import resolve_device
from kdkit.trainer.loop import FitResult, fit
from kdkit.trainer.settings import TrainSettings


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


class DataFreeOptions(SchemeOptions):
    """data_free: the teacher teaches on inputs synthesised from it (DeepInversion) instead of the training data."""

    name: Literal["data_free"] = "data_free"
    num_samples: int | None = Field(None, ge=1, description="inputs to synthesise (default: as many as the training "
                                    "set)")
    steps: int = Field(200, ge=1, description="optimisation steps per synthetic batch")
    bn_weight: float = Field(1.0, ge=0, description="weight of the BatchNorm-statistics prior")
    tv_weight: float = Field(1e-3, ge=0, description="weight of the total-variation prior")
    trains_on_data = False

    def check_losses(self, losses: list[dict[str, Any]]) -> None:
        if [t.get("name") for t in losses] != ["kd"]:
            raise ValueError("scheme 'data_free' distils with one KD term on unlabelled synthetic inputs; give "
                             "distill.losses: [{name: kd, T: 4}] (alpha is not used)")

    def tune_space(self, losses: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {"distill.losses.kd.T": dict(DEFAULT_T_RANGE)}  # no hard-label term to weigh

    def plan(self, inputs: PlanInputs) -> SchemePlan:
        return DataFreePlan(self, inputs)


class DataFreePlan(SchemePlan):
    """The trained teacher's inputs are synthesised (DeepInversion) and the student distilled on them alone; the
    real validation split is only logged: the student ends at its last epoch, not chosen by real data."""

    options: DataFreeOptions

    def __init__(self, options: DataFreeOptions, inputs: PlanInputs) -> None:
        super().__init__(options, inputs)
        # checked now, so that a run that cannot work stops before the teacher and the student alone train
        if not inputs.example.is_floating_point():
            raise ConfigError("scheme 'data_free' optimises continuous inputs; it cannot synthesise token ids "
                              "(text): choose another scheme for text data")
        if options.bn_weight > 0 and not any(isinstance(m, BATCHNORMS) for m in self.teacher.modules()):
            raise ModelError(f"scheme 'data_free' matches the teacher's BatchNorm statistics, but "
                             f"{type(self.teacher).__name__} has no BatchNorm layer; use a teacher with BatchNorm or "
                             "set distill.scheme.bn_weight: 0")

    def distill(self, distill_set: Dataset, train_loader: DataLoader, val_loader: DataLoader | None,
                settings: TrainSettings, run_dir: Path | None, on_epoch: Callable | None = None,
                on_cache: Callable | None = None) -> None:
        o, run = self.options, self.inputs
        synthetic = synthesize(self.teacher, o.num_samples or run.num_train, run.input_shape, run.num_classes,
                               steps=o.steps, bn_weight=o.bn_weight, tv_weight=o.tv_weight, seed=settings.seed,
                               device=resolve_device(settings.device))
        # the config holds one kd term (checked when parsed); its T, defaulted by the loss itself when not given
        distill_data_free(self.student, self.teacher, synthetic, T=float(self.terms[0].loss.T),
                          settings=settings.model_copy(update={"keep": "last"}), val_loader=val_loader,
                          run_dir=run_dir, name="student_kd")


__all__ = ["DataFreeOptions", "SyntheticData", "distill_data_free", "synthesize"]
