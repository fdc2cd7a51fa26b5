"""Field types of the strict config schema.

The config models validate in pydantic's strict mode (``STRICT``): a YAML ``yes`` is not the number 1, the string
``"0.01"`` is not a float, and NaN or infinity is never a valid setting. Two kinds of value must still be converted
from what YAML can hold, and are marked lax here: paths (YAML has strings) and fixed-size tuples (YAML has lists).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, PositiveInt, Strict

# model_config of every config section: strict types, no NaN or infinity, no unknown keys
STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class StrictModel(BaseModel):
    """Base of every config section (and of each scheme's options): STRICT, and field names such as
    `model_...` allowed."""

    model_config = ConfigDict(**STRICT, protected_namespaces=())

LaxPath = Annotated[Path, Strict(False)]
PixelSize = PositiveInt | Annotated[tuple[PositiveInt, PositiveInt], Strict(False)]
