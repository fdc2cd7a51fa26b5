"""Schemes by name. A scheme file declares its options as a :class:`SchemeOptions` subclass (its `name` a Literal,
its keys with their defaults and ranges) whose :meth:`~SchemeOptions.plan` builds what trains the student; the
registry finds every such class by importing each module of kdkit.schemes once, so adding a scheme is adding its
file. The run config, the pipeline, tune and the report learn about schemes only through here:

    options = scheme_options({"name": "born_again", "generations": 3})   # validated, one-line errors
    type(options).starts_near_teacher                                   # what the scheme supports
    plan = options.plan(inputs)                                         # kdkit.schemes.plan.PlanInputs
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from kdkit.config.named import NamedOptions, Registry

if TYPE_CHECKING:
    from kdkit.models.spec import ModelConfig

CLASSIFICATION, LM = "classification", "lm"
DEFAULT_SCHEME = {CLASSIFICATION: "offline", LM: "offline"}
# the ranges `kdkit tune` searches by default: KD's temperature on a log scale, and the weight of the hard labels
DEFAULT_T_RANGE = {"low": 1.0, "high": 10.0, "log": True}
DEFAULT_ALPHA_RANGE = {"low": 0.0, "high": 1.0}


def _elsewhere(name: str, family: str) -> str:
    kind = "a language-model" if family == LM else "a classification"
    return f"'{name}' is {kind} scheme; it does not apply to this config's data"


SCHEMES = Registry("kdkit.schemes", "scheme", "scheme", DEFAULT_SCHEME, _elsewhere)


class SchemeOptions(NamedOptions):
    """A scheme's keys under ``distill.scheme``. Subclasses set `name: Literal["..."] = "..."`, their own keys, the
    class flags below where they differ, and :meth:`plan`."""

    registry = SCHEMES
    family: ClassVar[str] = CLASSIFICATION  # LM: a language-model scheme (kdkit.families.lm.config)
    # what the rest of a run asks of a scheme; the defaults describe plain one-teacher distillation
    reads_losses: ClassVar[bool] = True  # trains with distill.losses (mutual learning has its own T and alpha)
    trains_on_data: ClassVar[bool] = True  # the student learns from the data's inputs (data_free: synthetic ones)
    distils_teacher_on_data: ClassVar[bool] = False  # the top-level teacher labels the distillation set (boundary)
    cacheable: ClassVar[bool] = False  # fixed teacher outputs per sample (distill.cache_teacher)
    replays_views: ClassVar[bool] = False  # the teacher's stored answers per augmented view (distill.cached_views)
    starts_near_teacher: ClassVar[bool] = False  # distill.init_from_teacher applies
    writes_answers: ClassVar[bool] = False  # LM: the teacher answers extra prompts (data.n_transfer)
    logs_fidelity: ClassVar[bool] = False  # validation agreement and predictive KL every epoch (tune prunes on them)

    def check_losses(self, losses: list[dict[str, Any]]) -> None:
        """ValueError when this scheme cannot train with these distill.losses (by default any terms do)."""

    def models(self) -> list[tuple[str, ModelConfig]]:
        """The scheme's own model entries, each with its config key (assistants, teachers, peers)."""
        return []

    def tune_space(self, losses: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """What `kdkit tune` searches when the config gives no space: T and alpha of the first loss term, by name
        (the first term of a name is labelled by the name)."""
        first = f"distill.losses.{losses[0]['name']}"
        return {f"{first}.T": dict(DEFAULT_T_RANGE), f"{first}.alpha": dict(DEFAULT_ALPHA_RANGE)}

    def plan(self, inputs: Any) -> Any:
        """What trains the student: a kdkit.schemes.plan.SchemePlan built from the run's PlanInputs (the plan module
        builds on this one, so the types are named here, not imported)."""
        raise NotImplementedError(f"scheme '{self.name}' has no plan")


def schemes(family: str = CLASSIFICATION) -> dict[str, type[SchemeOptions]]:
    """The registered schemes of `family`, by name."""
    return SCHEMES.of(family)  # type: ignore[return-value]


def scheme_options(raw: Any, family: str = CLASSIFICATION) -> SchemeOptions:
    """The options of the scheme `raw` names (see kdkit.config.named.Registry.options)."""
    return SCHEMES.options(raw, family)  # type: ignore[return-value]
