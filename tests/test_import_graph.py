"""The import graph reads one way (issue 15 item 1): config -> plans -> schemes -> trainer -> step. A scheme is a
training step or an orchestration of steps; it never reads the config, the pipeline or the plans built from them."""

from __future__ import annotations

import ast
from pathlib import Path

import kdkit.schemes

SCHEMES = Path(kdkit.schemes.__file__).parent
# none left: sequence-level KD builds its rows with kdkit.lm.dataset, the encoding layer below the data sources
DATA_IMPORTS_LEFT: set[str] = set()


def _imported(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def _imports_any(path: Path, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for name in _imported(path) for p in packages)


def test_no_scheme_imports_the_config_the_pipeline_or_the_plans() -> None:
    files = sorted(SCHEMES.glob("*.py"))
    assert len(files) > 5  # the folder was found
    offenders = [p.name for p in files if _imports_any(p, ("kdkit.families", "kdkit.tune"))]
    assert offenders == []


def test_only_the_listed_schemes_still_import_the_data_package() -> None:
    offenders = {p.name for p in SCHEMES.glob("*.py")
                 if any(n.startswith("kdkit.data") and not n.startswith("kdkit.data.loaders") for n in _imported(p))}
    assert offenders == DATA_IMPORTS_LEFT


def test_the_trainer_and_the_step_interface_import_no_scheme() -> None:
    """Schemes (steps and orchestrators alike) call the trainer; the trainer sees only kdkit.trainer.step.Scheme."""
    root = SCHEMES.parent
    assert not _imports_any(root / "trainer" / "loop.py", ("kdkit.schemes",))
    assert not _imports_any(root / "trainer" / "step.py", ("kdkit.schemes", "kdkit.trainer.loop"))
