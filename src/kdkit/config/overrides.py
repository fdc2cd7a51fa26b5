"""Config values changed on the command line: ``kdkit train CONFIG --set train.epochs=30 --set
distill.losses.0.T=2 -o runs/x``, so that trying a few settings needs no copies of a YAML file.

An override is a dotted path into the config as the file writes it (a list item by position, a loss term also by
its label: ``distill.losses.0.T`` or ``distill.losses.kd.T``, ``kd2`` for a second kd term) and a value read as
YAML (``30``, ``0.5``, ``1e-3``, ``true``, ``null``, ``[64, 32]``, ``{name: jsd, beta: 0.5}``). The overrides
change the file's mapping before it is validated, so a wrong key or value is refused exactly as in the file, with
the same line naming its dotted path (an unknown key with "did you mean"). A section the file leaves out is
created; a list it leaves out (e.g. ``distill.losses``) starts as the default list, so its items can be set.
``-o/--output-dir`` sets ``output_dir``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from kdkit.config.paths import list_index, named_items, term_labels
from kdkit.errors import ConfigError

EXAMPLE = "e.g. --set train.epochs=30 or --set distill.losses.0.T=2"


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.0.c=value` as (["a", "b", "0", "c"], the value read as YAML)."""
    from kdkit.config.yaml import load_yaml

    path, sep, value = text.partition("=")
    keys = path.strip().split(".")
    if not sep or not path.strip():
        raise ConfigError(f"--set {text}: give PATH=VALUE, {EXAMPLE}")
    if not all(keys):
        raise ConfigError(f"--set {text}: '{path.strip()}' has an empty key; write the path as in the file, {EXAMPLE}")
    try:
        return keys, load_yaml(value)
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or type(err).__name__
        raise ConfigError(f"--set {text}: the value is not valid YAML ({problem}); quote text with spaces or "
                          "colons, e.g. --set 'output_dir=\"runs/a b\"'") from None


def _list_error(text: str, where: str, items: list[Any], key: str) -> ConfigError:
    labels = ""
    if items and named_items(items):
        labels = f" or by label ({', '.join(term_labels([item['name'] for item in items]))})"
    return ConfigError(f"--set {text}: {where} has {len(items)} item(s); no item '{key}' (by position 0 to "
                       f"{len(items) - 1}{labels})")


def _default_at(defaults: Callable[[], Any], keys: list[str]) -> Any:
    """The value the config has at `keys` when the file leaves it out (None when that is no list)."""
    node = defaults()
    for key in keys:
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and (position := list_index(node, key)) is not None:
            node = node[position]
        else:
            return None
    return copy.deepcopy(node) if isinstance(node, list) else None


def _child(node: Any, keys: list[str], depth: int, text: str, defaults: Callable[[], Any]) -> Any:
    """The section at keys[depth] under `node`, made when the file leaves it out (a default list, else a mapping)."""
    key = keys[depth]
    if isinstance(node, dict):
        if node.get(key) is None:  # absent, or null in the file
            node[key] = _default_at(defaults, keys[: depth + 1])
            node[key] = {} if node[key] is None else node[key]
        return node[key]
    position = list_index(node, key)
    if position is None:
        raise _list_error(text, ".".join(keys[:depth]), node, key)
    return node[position]


def _set(raw: dict[str, Any], keys: list[str], value: Any, text: str, defaults: Callable[[], Any]) -> None:
    node: Any = raw
    for depth in range(len(keys) - 1):
        if not isinstance(node, (dict, list)):
            where = ".".join(keys[:depth])
            raise ConfigError(f"--set {text}: {where} is a value ({node!r}), not a section; check the path")
        node = _child(node, keys, depth, text, defaults)
    leaf = keys[-1]
    if isinstance(node, dict):
        node[leaf] = value
    elif isinstance(node, list):
        position = list_index(node, leaf)
        if position is None:
            raise _list_error(text, ".".join(keys[:-1]), node, leaf)
        node[position] = value
    else:
        raise ConfigError(f"--set {text}: {'.'.join(keys[:-1])} is a value ({node!r}), not a section; check the "
                          "path")


def apply_overrides(raw: Any, overrides: Sequence[str] = (), output_dir: str | Path | None = None,
                    defaults: Callable[[dict[str, Any]], Any] | None = None) -> Any:
    """A copy of the config mapping `raw` with each override set and `output_dir` (if given) replacing the file's;
    `defaults(raw)` gives the validated config as a mapping, read only when an override reaches into a list the file
    leaves out. A `raw` that is no mapping is returned as it is, for the validation to refuse."""
    if not isinstance(raw, dict) or not (overrides or output_dir is not None):
        return raw
    changed = copy.deepcopy(raw)
    cache: dict[str, Any] = {}

    def file_defaults() -> Any:
        if "value" not in cache:
            try:
                cache["value"] = defaults(raw) if defaults is not None else {}
            except ConfigError:  # the file alone is not valid (an override may complete it): no defaults to read
                cache["value"] = {}
        return cache["value"]

    for text in overrides:
        keys, value = parse_override(text)
        _set(changed, keys, value, text, file_defaults)
    if output_dir is not None:
        changed["output_dir"] = str(output_dir)
    return changed
