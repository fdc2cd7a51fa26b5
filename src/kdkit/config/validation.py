"""A pydantic validation error as one line naming the key and the fix: ``config error at teacher.modle: unknown key;
did you mean 'model'?``. Generic over any pydantic model; a model whose valid keys are more than its own fields
(options chosen by name, kdkit.config.named) says so with a ``known_keys()`` class method.
"""

from __future__ import annotations

import difflib
import re
import typing
from typing import Any

from pydantic import BaseModel, ValidationError


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class that owns the key at `loc` (for 'did you mean' hints)."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None)
        # an optional section (e.g. `BoundaryConfig | None`) owns its keys like a plain one
        models = [a for a in (typing.get_args(ann) or (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(models) != 1:
            return None
        model = models[0]
    return model


_UNION_MEMBER = (r"(str|int|float|bool|none|constrained-\w+|(list|tuple|dict|set|literal|function-\w+|is-instance|"
                 r"lax-or-strict|nullable|constrained-\w+)\[.*\])")


def _is_union_member(part: Any) -> bool:
    return isinstance(part, str) and re.fullmatch(_UNION_MEMBER, part) is not None


def format_validation_error(err: ValidationError, schema: type[BaseModel], prefix: str = "") -> str:
    """First pydantic error as one line: 'config error at teacher.modle: unknown key; did you mean 'model'?'."""
    first = err.errors()[0]
    # pydantic names the member of a union that failed (`student.str`, `image_size.tuple[...]`): not a config key
    loc = tuple(p for p in first["loc"] if not _is_union_member(p))
    key = ".".join(str(p) for p in ((prefix,) if prefix else ()) + loc)
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    if first["type"] == "extra_forbidden":
        owner = _model_at(schema, loc)
        # options chosen by name (a scheme's, a data source's) know every member's keys: the member a config names
        # is picked by its registry, so any member's key is a fair guess
        known = (owner.known_keys() if owner and hasattr(owner, "known_keys")
                 else list(owner.model_fields) if owner else [])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(known)}"
        return f"config error at {key}: unknown key; {hint}{more}"
    if first["type"] == "missing":
        return f"config error at {key}: required key is missing; add it to the config{more}"
    msg = first["msg"].removeprefix("Value error, ")
    value = first.get("input")
    shown = f" (got {value!r})" if not isinstance(value, (dict, list)) and value is not None else ""
    return f"config error at {key}: {msg}{shown}{more}"
