"""No function in src/ is longer than 60 lines (its def to its last line, docstring and comments included), so each
reads on one screen. The few still longer are listed with their length today: a listed function may only shrink,
and leaves the list once it fits."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
LIMIT = 60
# path::qualified name -> its length now; shrink these, never add to them
LONGER: dict[str, int] = {}


def function_lengths(source: str, where: str) -> dict[str, int]:
    """Every function and method of `source` (nested ones too) by ``where::Class.name``: its length in lines."""
    found: dict[str, int] = {}

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                found[f"{where}::{name}"] = child.end_lineno - child.lineno + 1
                walk(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                walk(child, prefix + child.name + ".")
            else:
                walk(child, prefix)

    walk(ast.parse(source), "")
    return found


def all_lengths() -> dict[str, int]:
    lengths: dict[str, int] = {}
    for path in sorted(SRC.rglob("*.py")):
        lengths.update(function_lengths(path.read_text(encoding="utf-8"), path.relative_to(SRC).as_posix()))
    return lengths


def test_the_measure_counts_a_function_from_its_def_to_its_last_line_methods_and_nested_ones_included() -> None:
    source = ("class A:\n    def f(self):\n        def g():\n            pass\n        return g\n\n\n"
              "def h():\n    x = 1\n\n    return x\n")
    assert function_lengths(source, "m.py") == {"m.py::A.f": 4, "m.py::A.f.g": 2, "m.py::h": 4}


def test_no_function_in_src_is_longer_than_60_lines_except_the_listed_ones_which_only_shrink() -> None:
    lengths = all_lengths()
    too_long = {name: n for name, n in lengths.items() if n > LIMIT and name not in LONGER}
    assert not too_long, f"over {LIMIT} lines: {too_long}; split them into named parts"
    grown = {name: (LONGER[name], lengths[name]) for name in LONGER if lengths.get(name, 0) > LONGER[name]}
    assert not grown, f"listed functions grew (listed, now): {grown}; they may only shrink"
    fits = [name for name in LONGER if lengths.get(name, 0) <= LIMIT]
    assert not fits, f"{fits} now fit in {LIMIT} lines (or are gone): remove them from LONGER"
