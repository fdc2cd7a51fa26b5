"""Schemes by name. A scheme file declares its options as a :class:`SchemeOptions` subclass (its `name` a Literal,
its keys with their defaults and ranges) whose :meth:`~SchemeOptions.plan` builds what trains the student; the
registry finds every such class by importing each module of kdkit.schemes once, so adding a scheme is adding its
file. The run config, the pipeline, tune and the report learn about schemes only through here:

    options = scheme_options({"name": "born_again", "generations": 3})   # validated, one-line errors
    type(options).starts_near_teacher                                   # what the scheme supports
    plan = options.plan(inputs)                                         # kdkit.schemes.plan.PlanInputs
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationError

from kdkit.schema_types import StrictModel

if TYPE_CHECKING:
    from kdkit.model_config import ModelConfig
    from kdkit.schemes.plan import PlanInputs, SchemePlan

CLASSIFICATION, LM = "classification", "lm"
DEFAULT_SCHEME = {CLASSIFICATION: "offline", LM: "sequence_level"}
_REGISTRY: dict[str, dict[str, type[SchemeOptions]]] = {CLASSIFICATION: {}, LM: {}}
_discovered = False


class SchemeOptions(StrictModel):
    """A scheme's keys under ``distill.scheme``. Subclasses set `name: Literal["..."] = "..."`, their own keys, the
    class flags below where they differ, and :meth:`plan`."""

    name: str

    family: ClassVar[str] = CLASSIFICATION  # LM: a language-model scheme (kdkit.lm.config)
    # what the rest of a run asks of a scheme; the defaults describe plain one-teacher distillation
    reads_losses: ClassVar[bool] = True  # trains with distill.losses (mutual learning has its own T and alpha)
    trains_on_data: ClassVar[bool] = True  # the student learns from the data's inputs (data_free: synthetic ones)
    distils_teacher_on_data: ClassVar[bool] = False  # the top-level teacher labels the distillation set (boundary)
    cacheable: ClassVar[bool] = False  # fixed teacher outputs per sample (distill.cache_teacher)
    starts_near_teacher: ClassVar[bool] = False  # distill.init_from_teacher applies
    writes_answers: ClassVar[bool] = False  # LM: the teacher answers extra prompts (data.n_transfer)
    logs_fidelity: ClassVar[bool] = False  # validation agreement and predictive KL every epoch (tune prunes on them)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        name = cls.model_fields["name"].default
        if isinstance(name, str):  # an intermediate base without a name registers nothing
            _REGISTRY[cls.family][name] = cls

    @classmethod
    def known_keys(cls) -> list[str]:
        """Every key any scheme reads (for 'did you mean' hints on a key no scheme has)."""
        return sorted({k for family in _families().values() for c in family.values() for k in c.model_fields})

    def check_losses(self, losses: list[dict[str, Any]]) -> None:
        """ValueError when this scheme cannot train with these distill.losses (by default any terms do)."""

    def models(self) -> list[tuple[str, ModelConfig]]:
        """The scheme's own model entries, each with its config key (assistants, teachers, peers)."""
        return []

    def tune_space(self, losses: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """What `kdkit tune` searches when the config gives no space: T and alpha of the first loss term, by name
        (the first term of a name is labelled by the name)."""
        first = f"distill.losses.{losses[0]['name']}"
        return {f"{first}.T": {"low": 1.0, "high": 10.0, "log": True}, f"{first}.alpha": {"low": 0.0, "high": 1.0}}

    def plan(self, inputs: PlanInputs) -> SchemePlan:
        raise NotImplementedError(f"scheme '{self.name}' has no plan")


def _families() -> dict[str, dict[str, type[SchemeOptions]]]:
    global _discovered
    if not _discovered:
        import kdkit.schemes

        for module in pkgutil.iter_modules(kdkit.schemes.__path__):
            importlib.import_module(f"kdkit.schemes.{module.name}")
        _discovered = True
    return _REGISTRY


def schemes(family: str = CLASSIFICATION) -> dict[str, type[SchemeOptions]]:
    """The registered schemes of `family`, by name."""
    return dict(_families()[family])


def _name_error(name: Any, known: dict[str, type[SchemeOptions]]) -> ValidationError:
    close = difflib.get_close_matches(name, list(known), n=1) if isinstance(name, str) else []
    hint = f"did you mean '{close[0]}'?" if close else f"choose one of: {', '.join(sorted(known))}"
    error = ValueError(f"unknown scheme {name!r}; {hint}")
    return ValidationError.from_exception_data(
        "SchemeOptions", [{"type": "value_error", "loc": ("name",), "input": name, "ctx": {"error": error}}])


def scheme_options(raw: Any, family: str = CLASSIFICATION) -> SchemeOptions:
    """The options of the scheme `raw` names (a mapping from YAML, None for the default scheme, or options already
    built). A key of another scheme is refused in one line naming the schemes that read it, except when it holds
    that scheme's default: a run directory's config.yaml of an older kdkit writes every scheme's keys."""
    if isinstance(raw, SchemeOptions):
        return raw
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ValueError("distill.scheme must be a mapping, e.g. {name: offline}")
    known = schemes(family)
    name = raw.get("name", DEFAULT_SCHEME[family])
    if not isinstance(name, str) or name not in known:
        raise _name_error(name, known)
    own = known[name].model_fields
    kept, stray = {}, []
    for key, value in raw.items():
        owners = [c for c in known.values() if key in c.model_fields]
        if key in own or not owners:  # a key no scheme has: the options model reports it, with a hint
            kept[key] = value
        elif not all(value == c.model_fields[key].get_default(call_default_factory=True) for c in owners):
            stray.append(key)
    if stray:
        owners = sorted(n for n, c in known.items() if set(stray) & set(c.model_fields))
        raise ValueError(f"{', '.join(sorted(stray))} do{'es' if len(stray) == 1 else ''} not apply to scheme "
                         f"'{name}' (only to: {', '.join(owners)}); remove it or change scheme.name")
    return known[name].model_validate(kept)
