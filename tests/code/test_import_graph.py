"""The import graph reads one way: the import-linter contracts in pyproject.toml ([tool.importlinter]) hold. They
put every package of kdkit in a layer (cli, families, tune, report and deploy, ..., config, io, errors), keep the
three task families apart, allow no cycle in any package, keep the schemes off the data sources and the trainer's
step interface off the trainer; imports inside functions count. `make lint` runs the same check; this test makes
pytest fail too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import kdkit

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def test_the_contracts_cover_every_package_and_allow_no_cycle() -> None:
    contracts = _contracts()
    layers = contracts["layers"]
    assert layers["type"] == "layers" and layers["exhaustive"] is True and layers["containers"] == ["kdkit"]
    assert layers["layers"][0] == "cli" and layers["layers"][-1] == "errors"
    assert contracts["no-cycles"]["type"] == "acyclic_siblings" and contracts["no-cycles"]["ancestors"] == ["kdkit"]
    assert contracts["families"]["type"] == "independence"


@pytest.mark.skipif(not LINT_IMPORTS.is_file(), reason="import-linter is not installed (pip install -e '.[dev]')")
def test_lint_imports_keeps_every_contract() -> None:
    src = str(Path(kdkit.__file__).parents[1])  # the kdkit this test imports, not another installed copy
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert f"Contracts: {len(_contracts())} kept, 0 broken." in done.stdout
