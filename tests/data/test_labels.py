"""One spelling of "no label": kdkit.labels.UNLABELLED, defined once and used by the data
sources, the losses, the trainer, the metrics and the verdict."""

from __future__ import annotations

import ast
from pathlib import Path

import kdkit.labels
from kdkit.labels import UNLABELLED

SRC = Path(kdkit.labels.__file__).parent


def _sources() -> list[Path]:
    # tabular works on numpy tables with its own label encoding and is outside this rule
    return [p for p in sorted(SRC.rglob("*.py")) if "tabular" not in p.parts]


def _is_minus_one(node: ast.AST) -> bool:
    return (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant)
            and node.operand.value == 1)


def test_the_constant_is_defined_once() -> None:
    defined = [f"{p.relative_to(SRC)}:{n.lineno}" for p in _sources()
               for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
               if isinstance(n, ast.Assign) and _is_minus_one(n.value)
               and any(isinstance(t, ast.Name) and t.id.isupper() for t in n.targets)]
    assert len(defined) == 1 and defined[0].startswith("labels.py:")


def test_no_module_compares_labels_with_a_bare_minus_one() -> None:
    bare = [f"{p.relative_to(SRC)}:{n.lineno}" for p in _sources()
            for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
            if isinstance(n, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq)) for op in n.ops)
            and any(_is_minus_one(c) for c in n.comparators)]
    assert bare == []


def test_every_public_name_is_the_same_constant() -> None:
    import kdkit.data
    import kdkit.data.builtin
    import kdkit.losses.kd

    assert UNLABELLED == -1
    assert kdkit.data.UNLABELLED is UNLABELLED and kdkit.data.builtin.UNLABELLED is UNLABELLED
    assert kdkit.losses.kd.UNLABELLED is UNLABELLED
