"""Born-again networks (Furlanello, Lipton, Tschannen, Itti & Anandkumar, ICML 2018, "Born-Again Neural Networks").

A sequence of students of one architecture, each distilled from the one before:

    teacher -> generation 1 -> generation 2 -> ... -> generation k

Generation g minimises the loss terms (e.g. Hinton KD) with generation g - 1, frozen once trained, as its teacher;
the paper reports born-again students that outperform a teacher of their own architecture, and ensembles of
several generations that do better still. Each generation starts from its own random initialisation and has the
same loss terms, settings and shuffling order.

This is the teacher-assistant chain (see kdkit.schemes.assistants) whose assistants are shaped like the student,
so it is run by :func:`distill_through_assistants` itself. In the paper the first teacher also has the student's
architecture; kdkit allows any teacher (a larger one gives the chain its starting point, as in plain KD).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kdkit.errors import ConfigError
from kdkit.models.init import check_lam, check_same_architecture, teacher_near_init
from kdkit.schemes.assistants import TermSpecs, distill_through_assistants
from kdkit.schemes.plan import PlanInputs, SchemePlan
from kdkit.schemes.registry import SchemeOptions
from kdkit.trainer.loop import FitResult
from kdkit.trainer.settings import TrainSettings


def distill_born_again(
    teacher: nn.Module,
    generations: Sequence[nn.Module],
    terms: TermSpecs,
    train_loader: DataLoader,
    val_loader: DataLoader | None = None,
    settings: TrainSettings | None = None,
    run_dir: str | Path | None = None,
    name: str = "student_kd",
    init_from_teacher: float | None = None,
) -> list[FitResult]:
    """Distil `teacher` into ``generations[0]``, that into ``generations[1]``, ..., in place; the last generation is
    the result. The generations are expected to share the student's architecture (built like it, each from its own
    seed); nothing but the loss terms' module paths requires it.

    Checkpoints are named ``<name>_gen<g>`` for the earlier generations and ``<name>`` for the last.
    `init_from_teacher` = lam starts every generation at ``lam * its_teacher + (1 - lam) * its_random_init`` just
    before it trains (teacher-near initialisation, kdkit.models.init), which needs every model in the chain,
    the first teacher included, to have the same architecture. Returns the FitResult of every generation.
    """
    if isinstance(generations, nn.Module) and not isinstance(generations, nn.ModuleList):
        raise ConfigError("generations must be a list of models, e.g. [gen1, gen2], not one model")
    generations = list(generations)
    if not generations:
        raise ConfigError("born-again distillation needs at least one generation (the student)")
    prepare = None
    if init_from_teacher is not None:
        lam = check_lam(init_from_teacher)
        for pupil, mentor in zip(generations, [teacher, *generations[:-1]], strict=True):
            check_same_architecture(pupil, mentor)  # before the first generation trains, not after

        def prepare(pupil: nn.Module, mentor: nn.Module) -> None:
            teacher_near_init(pupil, mentor, lam)

    return distill_through_assistants(teacher, generations[:-1], generations[-1], terms, train_loader, val_loader,
                                      settings, run_dir, name, stage_label="gen", prepare=prepare)


class BornAgainOptions(SchemeOptions):
    """born_again: generations shaped like the student, each taught by the one before (Furlanello et al. 2018)."""

    name: Literal["born_again"] = "born_again"
    generations: int = Field(2, ge=1, description="students in the chain, the last one the distilled student "
                             "(1: plain offline distillation)")
    distils_teacher_on_data = True
    starts_near_teacher = True

    def plan(self, inputs: PlanInputs) -> SchemePlan:
        return BornAgainPlan(self, inputs)


class BornAgainPlan(SchemePlan):
    """Generations 1 .. k-1 are built like the student, each from its own seed, and saved as gen1, gen2, ...; the
    distilled student is generation k. With init_from_teacher every generation starts near its own teacher."""

    options: BornAgainOptions

    def __init__(self, options: BornAgainOptions, inputs: PlanInputs) -> None:
        super().__init__(options, inputs)
        for g in range(1, options.generations):
            self.extra_models[f"gen{g}"] = inputs.build(inputs.student_spec, inputs.seed + 400 + g)
        self.check_chain([self.teacher, *self.extra_models.values(), self.student])

    def distill(self, distill_set: Dataset, train_loader: DataLoader, val_loader: DataLoader | None,
                settings: TrainSettings, run_dir: Path | None, on_epoch: Callable | None = None,
                on_cache: Callable | None = None) -> None:
        distill_born_again(self.teacher, [*self.extra_models.values(), self.student], self.inputs.term_specs,
                           train_loader, val_loader, settings, run_dir, "student_kd",
                           init_from_teacher=self.inputs.init_from_teacher)
