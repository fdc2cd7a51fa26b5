"""Multi-teacher distillation: several frozen teachers teach one student through their ensemble (Hinton, Vinyals &
Dean 2015, "Distilling the Knowledge in a Neural Network", which distils an ensemble; You, Xu, Xu & Tao, KDD 2017,
"Learning from Multiple Teacher Networks").

With teacher logits z_1..z_K and weights w_i >= 0 normalised to sum to 1, the teachers' outputs become ONE teacher
logit vector z that the ordinary loss terms (kd, dkd, dist, ...) consume, as if it came from a single teacher:

    combine="probs" (default):  z = log( sum_i w_i * softmax(z_i) )      so softmax(z) = sum_i w_i * softmax(z_i)
    combine="logits":           z = sum_i w_i * z_i

"probs" is the ensemble's predictive distribution p = sum_i w_i * softmax(z_i): an ensemble predicts with its
averaged probabilities, so that is what the student is taught to match. Caveat: with a KD temperature T != 1 the
loss softens this ensemble distribution, softmax(z / T) = p^(1/T) renormalised, which is NOT the average of the
softened teachers, sum_i w_i * softmax(z_i / T); the two coincide only at T = 1. "logits" averages before the
softmax instead (softmax(z) is the renormalised weighted geometric mean of the teachers' distributions).
Under "probs" z is a log-probability vector: kd, dkd and dist only see softmax(z / T), which ignores a constant
added to a row, but relation losses fed the raw logits (rkd, sp, pkt) see log-probabilities; use "logits" there.

Teachers behave exactly as in :class:`OfflineDistillation`: eval mode at every step, requires_grad=False,
forward under inference_mode; with ``cache_size`` the combined outputs are computed once per sample index.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn
from torch.utils.data import Dataset

from kdkit.errors import ConfigError, ModelError
from kdkit.models.spec import ModelConfig
from kdkit.schemes.offline import OfflineDistillation
from kdkit.schemes.plan import PlanInputs, SchemePlan
from kdkit.schemes.registry import SchemeOptions
from kdkit.taps import LOGITS, Taps
from kdkit.terms import LossTerm

COMBINE = ("probs", "logits")


class MultiTeacherDistillation(OfflineDistillation):
    """Several frozen teachers, combined into one ensemble teacher, teach one student.

    Feature terms (a teacher key other than "logits") read the FIRST teacher, ``teachers[0]``, the primary
    teacher: features of different architectures have different shapes and meanings, so they cannot be averaged,
    whereas one named teacher gives a well-defined target (and its adapters, see :meth:`attach_adapters`).
    ``self.teacher`` is that first teacher; the "logits" every term sees are the ensemble's.
    """

    def __init__(
        self, student: nn.Module, teachers: Sequence[nn.Module], terms: Sequence[LossTerm],
        weights: Sequence[float] | None = None, combine: str = "probs", cache_size: int | None = None,
    ) -> None:
        if isinstance(teachers, nn.Module) and not isinstance(teachers, nn.ModuleList):
            # an nn.Sequential is a Sequence of its layers: it would silently become one "teacher" per layer
            raise ConfigError("teachers must be a list of models, e.g. [teacher_a, teacher_b], not one model")
        teachers = list(teachers)
        if not teachers:
            raise ConfigError("multi-teacher distillation needs at least one teacher; got an empty list")
        if combine not in COMBINE:
            raise ConfigError(f"combine must be one of {', '.join(COMBINE)}; got {combine!r}")
        weights = [1.0] * len(teachers) if weights is None else [float(w) for w in weights]
        if len(weights) != len(teachers):
            raise ConfigError(f"got {len(weights)} teacher weights for {len(teachers)} teachers; give one per teacher")
        if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) == 0:
            raise ConfigError(f"teacher weights must be finite, >= 0 and not all zero; got {weights}")
        # the first teacher is OfflineDistillation's `teacher`: its taps give the feature terms their inputs
        super().__init__(student, teachers[0], terms, cache_size)
        self.teachers = nn.ModuleList(teachers).eval().requires_grad_(False)
        self.weights = [w / sum(weights) for w in weights]
        self.combine = combine
        self.other_taps = [Taps(t) for t in teachers[1:]]  # no paths: logits only, no hooks

    def to(self, device: torch.device) -> MultiTeacherDistillation:
        super().to(device)
        self.teachers.to(device)
        return self

    def combine_logits(self, logits: Sequence[Tensor]) -> Tensor:
        """The ensemble's logits from each teacher's logits (formulas in the module docstring)."""
        for i, z in enumerate(logits[1:], start=1):
            if z.shape[-1] != logits[0].shape[-1]:
                raise ModelError(
                    f"teacher {i} predicts {z.shape[-1]} classes but teacher 0 predicts {logits[0].shape[-1]}; "
                    "give all teachers the same number of outputs (num_classes)"
                )
        # zero-weight teachers are left out, not multiplied by 0: 0 * inf would be nan, and log(0) is -inf
        used = [(w, z.float()) for w, z in zip(self.weights, logits, strict=True) if w > 0]
        if self.combine == "logits":
            out = sum(w * z for w, z in used)
        else:  # log sum_i w_i p_i, as a logsumexp of log-probabilities so that tiny probabilities do not underflow
            out = torch.logsumexp(torch.stack([math.log(w) + z.log_softmax(-1) for w, z in used]), dim=0)
        return out.to(logits[0].dtype)

    @torch.no_grad()
    def compute_teacher_outputs(self, x: Tensor) -> dict[str, Tensor]:
        """The first teacher's tapped features, and the ensemble's logits (cached per sample by the base class)."""
        self.teachers.eval()  # every step: the user may have left a teacher in train mode
        out = self.teacher_taps(x)  # first teacher: logits and tapped features
        logits = [out[LOGITS]] + [taps(x)[LOGITS] for taps in self.other_taps]
        return {**out, LOGITS: self.combine_logits(logits)}

    @torch.inference_mode()
    def eval_teacher_logits(self, x: Tensor) -> Tensor:
        """The ensemble's logits, so validation agreement is measured against the ensemble (the base class's
        eval_logits pairs them with the student's)."""
        return self.compute_teacher_outputs(x)[LOGITS]

    def close(self) -> None:
        """Remove the forward hooks from the student and the teachers."""
        super().close()
        for taps in self.other_taps:
            taps.remove()


class MultiTeacherOptions(SchemeOptions):
    """multi_teacher: the ensemble of the top-level teacher and `teachers` teaches the student."""

    name: Literal["multi_teacher"] = "multi_teacher"
    teachers: list[ModelConfig] = Field(default_factory=list, description="teachers besides the top-level one")
    weights: list[float] | None = Field(None, description="one weight per teacher, the top-level teacher first")
    combine: Literal["probs", "logits"] = Field("probs", description="average probabilities or logits")
    distils_teacher_on_data = True
    cacheable = True

    @model_validator(mode="after")
    def _teachers_and_weights(self) -> MultiTeacherOptions:
        if not self.teachers:
            raise ValueError("scheme 'multi_teacher' needs the other teachers under teachers (the top-level teacher "
                             "is the first); e.g. [{name: cnn1d, checkpoint: teacher2.safetensors}]")
        if self.weights is not None and len(self.weights) != 1 + len(self.teachers):
            raise ValueError(f"weights has {len(self.weights)} values for {1 + len(self.teachers)} teachers "
                             "(the top-level teacher first); give one per teacher")
        return self

    def models(self) -> list[tuple[str, ModelConfig]]:
        return [("distill.scheme.teachers", m) for m in self.teachers]

    def plan(self, inputs: PlanInputs) -> SchemePlan:
        return MultiTeacherPlan(self, inputs)


class MultiTeacherPlan(SchemePlan):
    """The other teachers are built now (each from its own seed) and trained on the labels, or loaded from their
    checkpoints, once the top-level teacher is ready."""

    options: MultiTeacherOptions

    def __init__(self, options: MultiTeacherOptions, inputs: PlanInputs) -> None:
        super().__init__(options, inputs)
        for i, spec in enumerate(options.teachers, start=2):
            self.extra_models[f"teacher{i}"] = inputs.build(spec, inputs.seed + 100 + i)

    def scheme(self, distill_set: Dataset, run_dir: Path | None) -> MultiTeacherDistillation:
        for (role, model), spec in zip(self.extra_models.items(), self.options.teachers, strict=True):
            self.inputs.train_or_load(model, spec, run_dir, role)
        return MultiTeacherDistillation(self.student, [self.teacher, *self.extra_models.values()], self.terms,
                                        self.options.weights, self.options.combine, self.cache_size(distill_set))
