"""Config files: :func:`read_config` reads one (or says in one line why not), with a YAML loader that refuses what
PyYAML lets slip by:

- A key given twice in one mapping: PyYAML keeps the last value silently, so a second `train:` block would drop
  the first one without a word. Refused, naming both lines.
- ``1e-3`` (no dot): YAML 1.1 reads it as a string, which a strict schema would then refuse as "not a number".
  Read as the float it is meant to be, as YAML 1.2 does.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from kdkit.errors import ConfigError
from kdkit.io.textfile import read_text

# YAML 1.2's float forms (the dot is optional before an exponent), besides YAML 1.1's sexagesimal and .inf/.nan
_FLOAT = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X)


class DuplicateKeyError(ConfigError):
    """A mapping in a YAML file gives the same key twice."""


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and reads 1e-3 as a float."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` then overriding keys is meant, not a mistake
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader's own error says so
                continue
            if first is not None:
                raise DuplicateKeyError(f"key '{key}' is given twice, at line {first} and line {line}; keep one "
                                        "(YAML would silently drop the first)")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


# add_implicit_resolver copies the parent's table first: yaml.SafeLoader itself is left as it was
StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def load_yaml(text: str) -> Any:
    """Parse one YAML document with :class:`StrictLoader` (yaml.YAMLError on syntax errors)."""
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass


class StrictDumper(yaml.SafeDumper):
    """SafeDumper that quotes strings StrictLoader would read as floats ('1e-3'), so a dump reads back the same."""


StrictDumper.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def dump_yaml(data: Any) -> str:
    """YAML text of `data` that :func:`load_yaml` reads back as the same values, keys in the given order."""
    return yaml.dump(data, Dumper=StrictDumper, sort_keys=False)


def read_config(path: str | Path) -> Any:
    """The YAML of a config file, unvalidated (any family's config is read here)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config error: {path} is a directory; give the YAML file, e.g. configs/demo.yaml")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = read_text(path, ConfigError)  # not UTF-8 or binary: one line naming the line and the fix
    try:
        raw = load_yaml(text)
    except DuplicateKeyError as err:
        raise ConfigError(f"config error: {path}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None)
        raise ConfigError(f"config error: {path} is not valid YAML{where}{f' ({problem})' if problem else ''}") \
            from None
    return raw
