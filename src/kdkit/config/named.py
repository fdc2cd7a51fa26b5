"""Options chosen by name, found by a registry: the base of a scheme's options (kdkit.schemes.registry) and a data
source's (kdkit.data.source). A subclass whose `name` has a default (``name: Literal["x"] = "x"``) registers itself
under that name in its family; the registry imports every module of its package once, so that declaring the class
is all it takes to add one. A config section names one of them:

    {name: born_again, generations: 3}   ->  registry.options(raw)  ->  BornAgainOptions(generations=3)

A key that belongs to another member of the family is refused in one line naming the members that read it, unless
it holds that member's default or is null: a run directory's config.yaml written by an older kdkit holds every key.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import ValidationError

from kdkit.config.types import StrictModel


class Registry:
    """Members by family and name; `what` names a member in messages ("scheme"), `where` its section ("scheme",
    "data"), `defaults` the member a family uses when none is named (a family without one requires a name), and
    `elsewhere(name, family)` what to say when the name belongs to another family."""

    def __init__(self, package: str, what: str, where: str, defaults: dict[str, str],
                 elsewhere: Callable[[str, str], str]) -> None:
        self.package, self.what, self.where, self.defaults, self.elsewhere = package, what, where, defaults, elsewhere
        self.members: dict[str, dict[str, type[NamedOptions]]] = {}
        self._discovered = False

    def add(self, cls: type[NamedOptions]) -> None:
        self.members.setdefault(cls.family, {})[cls.model_fields["name"].default] = cls

    def remove(self, name: str, family: str) -> None:
        """Forget a member (tests that declare one clean up with this)."""
        self.members.get(family, {}).pop(name, None)

    def families(self) -> dict[str, dict[str, type[NamedOptions]]]:
        if not self._discovered:
            package = importlib.import_module(self.package)
            for module in pkgutil.iter_modules(package.__path__):
                importlib.import_module(f"{self.package}.{module.name}")
            self._discovered = True
        return self.members

    def of(self, family: str) -> dict[str, type[NamedOptions]]:
        return dict(self.families().get(family, {}))

    def known_keys(self) -> list[str]:
        return sorted({k for members in self.families().values() for c in members.values() for k in c.model_fields})

    def _name_error(self, name: Any, family: str) -> ValidationError:
        known = self.of(family)
        other = next((f for f, members in self.families().items() if f != family and name in members), None)
        if other is not None:
            message = self.elsewhere(name, other)
        else:
            everything = [n for members in self.families().values() for n in members]
            close = difflib.get_close_matches(name, everything, n=1) if isinstance(name, str) else []
            hint = f"did you mean '{close[0]}'?" if close else f"choose one of: {', '.join(sorted(known))}"
            message = f"unknown {'' if family == 'classification' else 'language-model '}{self.what} {name!r}; {hint}"
        error = {"type": "value_error", "loc": ("name",), "input": name, "ctx": {"error": ValueError(message)}}
        return ValidationError.from_exception_data(self.what, [error])

    def options(self, raw: Any, family: str) -> NamedOptions:
        """The validated options of the member `raw` names (a mapping from YAML, None for the family's default, or
        options already built)."""
        if isinstance(raw, NamedOptions):
            return raw
        raw = {} if raw is None else raw
        if not isinstance(raw, dict):
            raise ValueError(f"{self.where} must be a mapping, e.g. {{name: {self.defaults.get(family, '...')}}}")
        if "name" not in raw and family not in self.defaults:
            missing = {"type": "missing", "loc": ("name",), "input": raw}
            raise ValidationError.from_exception_data(self.what, [missing])
        known = self.of(family)
        name = raw.get("name", self.defaults.get(family))
        if not isinstance(name, str) or name not in known:
            raise self._name_error(name, family)
        own = known[name].model_fields
        kept, stray = {}, []
        for key, value in raw.items():
            if key in own and value is None and own[key].get_default(call_default_factory=True) is not None:
                continue  # null: the default (older run directories write null for keys a member filled in itself)
            owners = [c for c in known.values() if key in c.model_fields]
            if key in own or not owners:  # a key no member has: the options model reports it, with a hint
                kept[key] = value
            elif value is not None and not all(value == c.model_fields[key].get_default(call_default_factory=True)
                                               for c in owners):
                stray.append(key)
        if stray:
            owners = sorted(n for n, c in known.items() if set(stray) & set(c.model_fields))
            one = len(stray) == 1
            raise ValueError(f"{', '.join(sorted(stray))} do{'es' if one else ''} not apply to {self.what} '{name}' "
                             f"(only to: {', '.join(owners)}); remove {'it' if one else 'them'} or change "
                             f"{self.where}.name")
        return known[name].model_validate(kept)


class NamedOptions(StrictModel):
    """A member's keys. Subclasses of a family base set `name: Literal["..."] = "..."` and their keys."""

    name: str
    registry: ClassVar[Registry]
    family: ClassVar[str] = "classification"

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if isinstance(cls.model_fields["name"].default, str):  # a base without a name registers nothing
            cls.registry.add(cls)

    @classmethod
    def known_keys(cls) -> list[str]:
        """Every key any member reads (for 'did you mean' hints on a key no member has)."""
        return cls.registry.known_keys()
