"""How a scheme trains the distilled student of a run: the base of every scheme's plan, and what a plan gets from the
run (:class:`PlanInputs`, filled by kdkit.families.classification.plans from the config, so no scheme reads the config
itself).

A plan is built before anything trains (its __init__ builds the scheme's extra models and checks them, so a bad
config fails at once) and trains once the teacher is ready:

    plan = options.plan(inputs)
    plan.distill(distill_set, train_loader, val_loader, settings, run_dir)
    plan.extra_models        # assistants, other teachers, peers, EMA teacher, generations: saved in run_dir/models/
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from kdkit.errors import ConfigError
from kdkit.models.init import check_same_architecture, teacher_near_init
from kdkit.schemes.registry import SchemeOptions
from kdkit.terms import LossTerm, check_paths
from kdkit.trainer.loop import fit
from kdkit.trainer.settings import TrainSettings
from kdkit.trainer.step import Scheme
from kdkit.trainer.teacher_cache import cache_report, persist_teacher_cache
from kdkit.trainer.view_cache import ReplayedViews, replay_views

if TYPE_CHECKING:
    from kdkit.models.spec import ModelConfig


@dataclass
class PlanInputs:
    """The run as a scheme's plan sees it: models, terms, the data's shape, and two builders for extra models."""

    student: nn.Module
    teacher: nn.Module
    terms: list[LossTerm]  # built once from `term_specs` when the config was parsed
    term_specs: list[dict[str, Any]]  # distill.losses, for chains that need fresh terms per pair of models
    student_spec: ModelConfig  # how the student was built (born-again generations, default mutual peer)
    seed: int
    example: Tensor  # one test input, batch of 1
    input_shape: tuple[int, ...]
    num_classes: int
    num_train: int
    build: Callable[[ModelConfig, int], nn.Module]  # a model from its config entry and an init seed
    train_or_load: Callable[[nn.Module, ModelConfig, Path | None, str], None]  # teacher-like: labels, or checkpoint
    init_from_teacher: float | None = None
    student_quantized: bool = False
    cache_teacher: bool = False
    cache_dir: Path | None = None


def check_init_from_teacher(lam: float | None, quantized: bool, student: nn.Module, teacher: nn.Module) -> None:
    """With distill.init_from_teacher (`lam`), the student must have the teacher's architecture: checked right after
    the models are built, so a mismatch fails before anything trains."""
    if lam is None:
        return
    if quantized:  # a quantization-aware student carries observers the teacher lacks
        raise ConfigError("distill.init_from_teacher interpolates a float student with the teacher; it cannot be "
                          "combined with student.quantize: remove one of them")
    check_same_architecture(student, teacher)


class SchemePlan:
    """Trains the distilled student as one scheme says. Subclasses build their extra models in __init__ and return
    their step scheme from :meth:`scheme`, or, when they orchestrate several trainings, override :meth:`distill`."""

    def __init__(self, options: SchemeOptions, inputs: PlanInputs) -> None:
        self.options, self.inputs = options, inputs
        self.student, self.teacher, self.terms = inputs.student, inputs.teacher, inputs.terms
        self.extra_models: dict[str, nn.Module] = {}
        self.teacher_cache: dict[str, Any] | None = None  # with distill.cache_teacher: its report, once distilled
        check_paths(self.student, self.teacher, self.terms)  # a wrong module path fails before any training
        check_init_from_teacher(inputs.init_from_teacher, inputs.student_quantized, self.student, self.teacher)

    def check_chain(self, chain: list[nn.Module]) -> None:
        """Feature paths must exist in every (pupil, mentor) pair of a chain, before any training."""
        for pupil, mentor in zip(chain[1:], chain[:-1], strict=True):
            check_paths(pupil, mentor, self.terms)

    def near_teacher(self) -> None:
        """distill.init_from_teacher, applied once the teacher is trained and before distillation begins (the
        student-alone row keeps its random start)."""
        if self.inputs.init_from_teacher is not None:
            teacher_near_init(self.student, self.teacher, self.inputs.init_from_teacher)

    def cache_size(self, distill_set: Dataset) -> int | None:
        return len(distill_set) if self.inputs.cache_teacher else None  # type: ignore[arg-type]

    def scheme(self, distill_set: Dataset, run_dir: Path | None) -> Scheme:
        raise NotImplementedError

    def distill(
        self, distill_set: Dataset, train_loader: DataLoader, val_loader: DataLoader | None, settings: TrainSettings,
        run_dir: Path | None, on_epoch: Callable[[dict[str, Any]], None] | None = None,
        on_cache: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """Train the distilled student; `on_epoch` (see fit) sees the student's epochs, in the schemes that train
        it in one stage (the chains and data-free distillation ignore it); `on_cache` gets the teacher cache's
        report (kdkit.trainer.teacher_cache.cache_report) once it is complete, before the first epoch."""
        scheme = self.scheme(distill_set, run_dir)
        if isinstance(distill_set, ReplayedViews):  # the teacher's answers to every stored view, from disk or now
            replay_views(scheme, distill_set, val_loader.dataset if val_loader is not None else None, settings,
                         self.inputs.cache_dir)
        elif self.inputs.cache_teacher:  # teacher outputs from disk when a run with the same key made them
            persist_teacher_cache(scheme, distill_set, val_loader.dataset if val_loader is not None else None,
                                  settings, self.inputs.cache_dir)
        try:
            fit(scheme, train_loader, val_loader, settings, run_dir, "student_kd", on_epoch=on_epoch,
                on_teacher_cache=None if on_cache is None else lambda done: on_cache(cache_report(done) or {}))
        finally:  # also when a tuning trial is pruned or fails: the shared teacher must not keep this run's hooks
            if hasattr(scheme, "close"):
                scheme.close()
            self.teacher_cache = cache_report(scheme)
