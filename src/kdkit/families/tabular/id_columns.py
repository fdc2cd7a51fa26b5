"""Columns that look like row ids, refused as features unless the user says what they are.

An id that becomes a feature is worse than useless: on a table sorted by class (or by time) its value encodes the
row's position, so out-of-fold scores soar while new rows, with new ids, are predicted from noise. Forgetting
``--id`` does exactly that, silently. A column counts as a likely id when its name says so (``id``, ``ID``,
``uuid``, ``guid``, ``*_id``, ``customerId``, ``Unnamed: 0`` from a saved DataFrame index ...) or when its
values do: whole numbers, one different value per row, in increasing or decreasing order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

ID_NAMES = re.compile(r"^(id|uuid|guid|row_?id|row_?num(ber)?|index|unnamed: ?\d+)$", re.IGNORECASE)
ID_SUFFIX = re.compile(r"[_\-. ]id$", re.IGNORECASE)  # customer_id, Customer ID, user-id


def _named_like_id(name: str) -> bool:
    name = name.strip()
    if ID_NAMES.match(name) or ID_SUFFIX.search(name):
        return True
    # camelCase, case-sensitive: customerId, userID; not paid, valid or PAID
    return len(name) > 2 and name[-3].islower() and name.endswith(("Id", "ID"))


def _counts_rows(values: pd.Series) -> bool:
    """Whole numbers, every one different, sorted up or down: a row counter."""
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values) or len(values) < 3:
        return False
    numbers = values.to_numpy(dtype=float, na_value=np.nan)
    if np.isnan(numbers).any() or not np.array_equal(numbers, np.round(numbers)):
        return False
    steps = np.diff(numbers)
    return bool((steps > 0).all() or (steps < 0).all())


def likely_ids(frame: pd.DataFrame, columns: Iterable[str]) -> dict[str, str]:
    """column -> why it looks like a row id, for the `columns` of `frame` that do."""
    found = {}
    for column in columns:
        reasons = []
        if _named_like_id(str(column)):
            reasons.append("named like an id")
        if _counts_rows(frame[column]):
            reasons.append("whole numbers, unique per row, in order")
        if reasons:
            found[column] = " and ".join(reasons)
    return found


def id_message(where: str, found: dict[str, str]) -> str:
    """One line naming the likely ids and the two ways to go on."""
    listed = "; ".join(f"'{c}' ({why})" for c, why in found.items())
    names = " ".join(found)
    first = next(iter(found))
    return (f"{where}: {'column' if len(found) == 1 else 'columns'} {listed} "
            f"{'looks' if len(found) == 1 else 'look'} like a row id, which as a feature leaks the row order into "
            f"the model; pass --id {first} to leave it out (it is copied to the predictions) or --keep-column "
            f"{first} to use it as a feature" + (f" (one option per column: {names})" if len(found) > 1 else ""))
