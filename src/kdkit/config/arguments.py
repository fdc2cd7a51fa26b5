"""Config values passed on as keyword arguments (a loss's ``T``, a model's ``hidden``), checked against the type
hints of the function that receives them, in pydantic's strict mode.

Without this, ``T: "hot"`` fails deep inside the loss with a comparison error that names no key, ``hidden:
[true]`` builds a layer of width 1, and ``T: .nan`` passes every ``T > 0`` check (NaN compares false) and
poisons training. The annotations are the single source of truth: a new loss or model is checked as soon as its
signature says what it takes.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ConfigDict, TypeAdapter, ValidationError

from kdkit.errors import ConfigError

_STRICT = ConfigDict(strict=True, allow_inf_nan=False, arbitrary_types_allowed=True)


def _hints(fn: Callable) -> dict[str, Any]:
    """Parameter annotations of a function or a class's __init__; {} when they cannot be resolved."""
    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - an annotation that cannot be evaluated here: the value is not checked
        return {}
    hints.pop("return", None)
    return hints


@functools.lru_cache(maxsize=512)
def _adapter(annotation: Any) -> TypeAdapter | None:
    try:
        return TypeAdapter(annotation, config=_STRICT)
    except Exception:  # noqa: BLE001 - a type pydantic cannot check (e.g. a forward reference): not checked
        return None


def _problem(annotation: Any, value: Any) -> str | None:
    """pydantic's message when `value` does not fit `annotation`, else None. A YAML list may stand for a tuple."""
    try:
        adapter = _adapter(annotation)
    except TypeError:  # an unhashable annotation
        adapter = None
    if adapter is None:
        return None
    tries = [value, tuple(value)] if isinstance(value, list) else [value]
    first = None
    for candidate in tries:
        try:
            adapter.validate_python(candidate)
            return None
        except ValidationError as err:
            first = first or err.errors()[0]
    loc = "".join(f"[{p}]" for p in first["loc"])
    return f"{loc}: {first['msg']}" if loc else first["msg"]


def check_arguments(fn: Callable, kwargs: Mapping[str, Any], where: str) -> None:
    """ConfigError 'config error at WHERE.KEY: ... (got VALUE)' for the first value its annotation refuses."""
    hints = _hints(fn)
    for key, value in kwargs.items():
        if key not in hints:
            continue
        problem = _problem(hints[key], value)
        if problem is not None:
            key_path = f"{where}.{key}" + (problem.split(":", 1)[0] if problem.startswith("[") else "")
            msg = problem.split(": ", 1)[1] if problem.startswith("[") else problem
            raise ConfigError(f"config error at {key_path}: {msg} (got {value!r})")
