"""A search space: dotted config paths (kdkit.config.paths) with their ranges (kdkit.tune.config.SearchRange), how a
trial draws a value from a range, and how a trial's values are set into a config's mapping."""

from __future__ import annotations

import json
import math
from typing import Any

from kdkit.config.paths import list_index
from kdkit.errors import ConfigError
from kdkit.tune.config import SearchRange


def set_path(raw: dict[str, Any], path: str, value: Any) -> None:
    """Set ``raw[a][b][0][c] = value`` for the path "a.b.0.c"; the last key may be new, the others must exist. In a
    list of loss terms an item is named by position or by label ("distill.losses.kd.T"; see kdkit.config.paths)."""
    *parents, leaf = path.split(".")
    node: Any = raw
    for i, key in enumerate(parents):
        node = _child(node, key, ".".join(parents[: i + 1]), path)
    if isinstance(node, list):
        _child(node, leaf, path, path)  # the item must exist
        node[list_index(node, leaf)] = value
    elif isinstance(node, dict):
        node[leaf] = value
    else:
        raise ConfigError(f"tune.space: '{path}' goes through a value, not a section; check the path")


def _child(node: Any, key: str, where: str, path: str) -> Any:
    if isinstance(node, dict) and key in node:
        return node[key]
    if isinstance(node, list) and (index := list_index(node, key)) is not None:
        return node[index]
    raise ConfigError(f"tune.space: '{path}' does not exist in the config (no '{where}'); give an existing path, "
                      "e.g. distill.losses.kd.T (a term by name; kd2 for a second kd term) or distill.losses.0.T")


def compound(space: SearchRange) -> bool:
    """Whether a choice is a list or mapping (e.g. an augmentation), which Optuna records as its JSON text."""
    return space.choices is not None and any(isinstance(c, (list, dict)) for c in space.choices)


def suggest(trial: Any, path: str, space: SearchRange) -> Any:
    if compound(space):
        return json.loads(trial.suggest_categorical(path, [json.dumps(c) for c in space.choices]))
    if space.choices is not None:
        return trial.suggest_categorical(path, space.choices)
    if space.integer:
        return trial.suggest_int(path, math.ceil(space.low), math.floor(space.high), log=space.log)
    return trial.suggest_float(path, space.low, space.high, log=space.log)


def decode_params(space: dict[str, SearchRange], params: dict[str, Any]) -> dict[str, Any]:
    """A trial's values by path, compound choices back from their JSON text."""
    return {p: json.loads(v) if p in space and compound(space[p]) else v for p, v in params.items()}


def range_end(space: SearchRange, end: int) -> Any:
    if space.choices is not None:
        return space.choices[end]
    if space.integer:
        return math.ceil(space.low) if end == 0 else math.floor(space.high)
    return space.low if end == 0 else space.high
