"""Data sources by name. A data module declares each source it loads as a :class:`SourceOptions` subclass beside its
loader (its `name` a Literal, its keys with their defaults and checks, and :meth:`~SourceOptions.load`); the registry
finds them by importing each module of kdkit.data once, so adding a source is adding its class to a data module
(or a new module). A config's `data` section is validated by the options of the source it names:

    options = source_options({"name": "fashion_mnist", "train_size": 5000})   # validated, one-line errors
    bundle = options.load(seed)                                               # a DataBundle

The data modules import scikit-learn, pandas, PIL and transformers inside the functions that use them, so finding
the sources (and reporting a config mistake) costs no more than importing torch.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from typing import Any, ClassVar

from pydantic import Field, ValidationError

from kdkit.schema_types import StrictModel

CLASSIFICATION, LM = "classification", "lm"
DEFAULT_SOURCE = {CLASSIFICATION: "mnist1d"}
_REGISTRY: dict[str, dict[str, type[SourceOptions]]] = {CLASSIFICATION: {}, LM: {}}
_discovered = False


class SourceOptions(StrictModel):
    """A data source's keys under ``data``. Subclasses set `name: Literal["..."] = "..."`, their keys and load."""

    name: str
    family: ClassVar[str] = CLASSIFICATION  # LM: a language-model source (kdkit.lm.config)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        name = cls.model_fields["name"].default
        if isinstance(name, str):  # an intermediate base without a name registers nothing
            _REGISTRY[cls.family][name] = cls

    @classmethod
    def known_keys(cls) -> list[str]:
        """Every key any source reads (for 'did you mean' hints on a key no source has)."""
        return sorted({k for family in _families().values() for c in family.values() for k in c.model_fields})

    def random_views(self) -> bool:
        """Whether a sample's input changes from epoch to epoch (random augmentation), so that teacher outputs
        cannot be cached per sample."""
        return False

    def keeps_raw_text(self) -> bool:
        """Whether batches carry the raw text for each model to tokenize its own way."""
        return False

    def load(self, *args: Any) -> Any:
        raise NotImplementedError(f"data source '{self.name}' has no loader")


class ClassificationSource(SourceOptions):
    """Keys every classification source takes."""

    transfer_size: int = Field(0, ge=0, description="extra unlabelled samples for the teacher to label")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="share of train held out when there is no val split")

    def load(self, seed: int) -> Any:
        raise NotImplementedError(f"data source '{self.name}' has no loader")


class GeneratedSource(ClassificationSource):
    """A data set made by a function ``generator(seed=, val_fraction=, transfer_size=) -> DataBundle``."""

    generator: ClassVar[Any] = None  # a staticmethod

    def load(self, seed: int) -> Any:
        return type(self).generator(seed=seed, val_fraction=self.val_fraction, transfer_size=self.transfer_size)


def _families() -> dict[str, dict[str, type[SourceOptions]]]:
    global _discovered
    if not _discovered:
        import kdkit.data

        for module in pkgutil.iter_modules(kdkit.data.__path__):
            importlib.import_module(f"kdkit.data.{module.name}")
        _discovered = True
    return _REGISTRY


def sources(family: str = CLASSIFICATION) -> dict[str, type[SourceOptions]]:
    """The registered data sources of `family`, by name."""
    return dict(_families()[family])


def _name_error(name: Any, family: str) -> ValidationError:
    known = sources(family)
    other = next((f for f in _REGISTRY if f != family and name in _REGISTRY[f]), None)
    if other == LM:  # kdkit train routes these to kdkit.lm.config before this schema sees them
        message = (f"'{name}' is a language-model source: run this config with `kdkit train` (other commands do not "
                   "take language-model configs yet)")
    else:
        close = difflib.get_close_matches(name, [*known, *(n for f in _REGISTRY for n in _REGISTRY[f])], n=1) \
            if isinstance(name, str) else []
        hint = f"did you mean '{close[0]}'?" if close else f"choose one of: {', '.join(sorted(known))}"
        message = f"unknown {'language-model ' if family == LM else ''}data source {name!r}; {hint}"
    error = {"type": "value_error", "loc": ("name",), "input": name, "ctx": {"error": ValueError(message)}}
    return ValidationError.from_exception_data("SourceOptions", [error])


def source_options(raw: Any, family: str = CLASSIFICATION) -> SourceOptions:
    """The options of the data source `raw` names (a mapping from YAML, None for the default source, or options
    already built). A key of another source is refused in one line naming the sources that read it, except when it
    is empty or holds that source's default: a run directory's config.yaml of an older kdkit writes every key."""
    if isinstance(raw, SourceOptions):
        return raw
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ValueError("data must be a mapping, e.g. {name: mnist1d}")
    known = sources(family)
    if "name" not in raw and family not in DEFAULT_SOURCE:
        raise ValidationError.from_exception_data("SourceOptions", [{"type": "missing", "loc": ("name",),
                                                                     "input": raw}])
    name = raw.get("name", DEFAULT_SOURCE.get(family))
    if not isinstance(name, str) or name not in known:
        raise _name_error(name, family)
    own = known[name].model_fields
    kept, stray = {}, []
    for key, value in raw.items():
        owners = [c for c in known.values() if key in c.model_fields]
        if key in own and value is None and own[key].get_default(call_default_factory=True) is not None:
            continue  # null: the default (older run directories write null for keys a source filled in itself)
        if key in own or not owners:  # a key no source has: the options model reports it, with a hint
            kept[key] = value
        elif value is not None and not all(value == c.model_fields[key].get_default(call_default_factory=True)
                                           for c in owners):
            stray.append(key)
    if stray:
        owners = sorted(n for n, c in known.items() if set(stray) & set(c.model_fields))
        raise ValueError(f"{', '.join(sorted(stray))} do{'es' if len(stray) == 1 else ''} not apply to data source "
                         f"'{name}' (only to: {', '.join(owners)}); remove {'it' if len(stray) == 1 else 'them'} or "
                         "change data.name")
    return known[name].model_validate(kept)
