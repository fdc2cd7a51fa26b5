"""Teacher assistants (Mirzadeh, Farajtabar, Li, Levine, Matsukawa & Ghasemzadeh, AAAI 2020, "Improved Knowledge
Distillation via Teacher Assistant").

When the teacher is much larger than the student, distillation can do worse than through a model of intermediate
size. TAKD distils in a chain of ordinary offline distillations, each model frozen once trained and then teaching
the next:

    teacher -> assistant_1 -> ... -> assistant_k -> student

Stage i minimises the same loss terms (e.g. Hinton KD) with model i-1 as the frozen teacher; every stage gets
fresh terms (adapters are per pair of models), the same training settings and the same shuffling order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kdkit.adapters import example_inputs
from kdkit.errors import ConfigError
from kdkit.models.spec import ModelConfig
from kdkit.schemes.offline import OfflineDistillation
from kdkit.schemes.plan import PlanInputs, SchemePlan
from kdkit.schemes.registry import SchemeOptions
from kdkit.terms import LossTerm, build_terms, check_paths
from kdkit.trainer.loop import FitResult, fit
from kdkit.trainer.settings import TrainSettings

TermSpecs = Sequence[Mapping[str, Any]] | Callable[[], Sequence[LossTerm]]


def _fresh_terms(terms: TermSpecs) -> list[LossTerm]:
    # a list of LossTerm objects would be shared across stages, adapters included: ask for specs or a factory
    return list(terms()) if callable(terms) else build_terms(terms)


def distill_through_assistants(
    teacher: nn.Module,
    assistants: Sequence[nn.Module],
    student: nn.Module,
    terms: TermSpecs,
    train_loader: DataLoader,
    val_loader: DataLoader | None = None,
    settings: TrainSettings | None = None,
    run_dir: str | Path | None = None,
    name: str = "student_kd",
    stage_label: str = "assistant",
    prepare: Callable[[nn.Module, nn.Module], None] | None = None,
) -> list[FitResult]:
    """Distil `teacher` into `assistants[0]`, that into `assistants[1]`, ..., the last into `student`.

    `terms`: loss-term specs such as ``[{"name": "kd", "T": 4, "alpha": 0.1}]`` or a function returning new
    LossTerm objects (called once per stage). Checkpoints are named ``<name>_<stage_label><i>`` and ``<name>``.
    `prepare(pupil, mentor)`, if given, runs right before each stage trains, once its mentor is trained (e.g.
    teacher-near initialisation of the pupil, see kdkit.models.init).
    Returns the FitResult of every stage, in chain order. The models are trained in place; the frozen ones get
    their ``requires_grad`` flags back at the end (they are left in eval mode).
    """
    if isinstance(assistants, nn.Module) and not isinstance(assistants, nn.ModuleList):
        raise ConfigError("assistants must be a list of models, e.g. [assistant], not one model")
    assistants = list(assistants)
    chain = [teacher, *assistants, student]
    if len({id(m) for m in chain}) != len(chain):
        raise ConfigError("teacher, assistants and student must be distinct models; one of them appears twice")
    if not callable(terms) and not terms:
        raise ConfigError("no loss terms given; e.g. terms=[{'name': 'kd', 'T': 4, 'alpha': 0.1}]")
    stage_terms = [_fresh_terms(terms) for _ in range(len(chain) - 1)]
    for pupil, mentor, pair_terms in zip(chain[1:], chain[:-1], stage_terms, strict=True):
        check_paths(pupil, mentor, pair_terms)  # a wrong module path fails before the first stage trains
    grad_flags = {id(m): [p.requires_grad for p in m.parameters()] for m in chain[:-1]}

    results = []
    example = example_inputs(train_loader.dataset)
    # every stage sees the same shuffling order, as if each had its own freshly seeded loader
    generator = getattr(train_loader, "generator", None)
    shuffle_state = generator.get_state() if generator is not None else None
    names = [f"{name}_{stage_label}{i + 1}" for i in range(len(assistants))] + [name]
    for i, (pupil, stage_name) in enumerate(zip(chain[1:], names, strict=True)):
        if shuffle_state is not None:
            generator.set_state(shuffle_state)
        if prepare is not None:
            prepare(pupil, chain[i])
        scheme = OfflineDistillation(pupil, chain[i], stage_terms[i], example=example)
        try:
            results.append(fit(scheme, train_loader, val_loader, settings, run_dir, stage_name))
        finally:
            scheme.close()
    for model in chain[:-1]:
        for param, flag in zip(model.parameters(), grad_flags[id(model)], strict=True):
            param.requires_grad_(flag)
    return results


class AssistantsOptions(SchemeOptions):
    """assistants: the teacher teaches the first assistant, each assistant the next, the last the student (TAKD)."""

    name: Literal["assistants"] = "assistants"
    assistants: list[ModelConfig] = Field(default_factory=list, description="teacher -> these -> student")
    distils_teacher_on_data = True

    @model_validator(mode="after")
    def _some_assistant(self) -> AssistantsOptions:
        if not self.assistants:
            raise ValueError("scheme 'assistants' needs at least one model under assistants, e.g. "
                             "[{name: cnn1d, params: {width: 24}}]")
        return self

    def models(self) -> list[tuple[str, ModelConfig]]:
        return [("distill.scheme.assistants", m) for m in self.assistants]

    def plan(self, inputs: PlanInputs) -> SchemePlan:
        return AssistantsPlan(self, inputs)


class AssistantsPlan(SchemePlan):
    options: AssistantsOptions

    def __init__(self, options: AssistantsOptions, inputs: PlanInputs) -> None:
        super().__init__(options, inputs)
        for i, spec in enumerate(options.assistants, start=1):
            self.extra_models[f"assistant{i}"] = inputs.build(spec, inputs.seed + 200 + i)
        self.check_chain([self.teacher, *self.extra_models.values(), self.student])

    def distill(self, distill_set: Dataset, train_loader: DataLoader, val_loader: DataLoader | None,
                settings: TrainSettings, run_dir: Path | None, on_epoch: Callable | None = None,
                on_cache: Callable | None = None) -> None:
        distill_through_assistants(self.teacher, list(self.extra_models.values()), self.student,
                                   self.inputs.term_specs, train_loader, val_loader, settings, run_dir, "student_kd")
