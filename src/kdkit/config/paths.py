"""Dotted paths into a config as its file writes it (``distill.losses.0.T``): a list item is named by its position,
and an item of a list of loss terms also by its label (``distill.losses.kd.T``; ``kd2`` for a second kd term). The
command-line overrides (kdkit.config.overrides) and the tune search space (kdkit.tune.space) both read paths so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def term_labels(names: Sequence[Any]) -> list[str]:
    """Each term's label, as logs and tune paths name it: its loss name, with 2, 3, ... added to the second, third,
    ... term of the same loss (``[kd, fitnet, kd]`` -> ``kd, fitnet, kd2``)."""
    seen: dict[str, int] = {}
    labels = []
    for name in names:
        seen[str(name)] = seen.get(str(name), 0) + 1
        labels.append(str(name) if seen[str(name)] == 1 else f"{name}{seen[str(name)]}")
    return labels


def named_items(items: list[Any]) -> bool:
    """Whether every item of a list has a name (a list of loss terms), so that it can be named by label."""
    return all(isinstance(item, dict) and "name" in item for item in items)


def list_index(items: list[Any], key: str) -> int | None:
    """The position `key` names in a list: a number, or a term's label (loss terms are dicts with a name)."""
    if key.isdigit():
        return int(key) if int(key) < len(items) else None
    if not named_items(items):
        return None
    labels = term_labels([item["name"] for item in items])
    return labels.index(key) if key in labels else None
