"""Start-up cost: `kdkit --help` and config mistakes must not wait for the training stack.

Each check runs a fresh interpreter, because this test process has long since imported everything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("sklearn", "pandas", "matplotlib", "transformers", "scipy", "optuna", "onnx", "torchvision", "timm")


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_importing_the_cli_loads_no_heavy_library() -> None:
    loaded = _modules_after("import kdkit.cli")
    assert not loaded & {*HEAVY, "torch"}, f"import kdkit.cli pulled in {sorted(loaded & {*HEAVY, 'torch'})}"


def test_importing_kdkit_is_lazy_but_names_still_resolve() -> None:
    loaded = _modules_after("import kdkit\nassert 'fit' in dir(kdkit) and kdkit.__version__")
    assert "torch" not in loaded
    import kdkit
    from kdkit.trainer.loop import fit

    assert kdkit.fit is fit and set(kdkit.__all__) <= set(dir(kdkit))
    with pytest.raises(AttributeError):
        kdkit.no_such_name  # noqa: B018


@pytest.mark.parametrize("fragment", [
    "train: {epochs: 0}",                       # a range error found by the schema
    "data: {name: mnist1dd}",                   # an unknown data source
])
def test_a_config_mistake_is_reported_before_the_training_stack_loads(tmp_path: Path, fragment: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("teacher: {name: mlp}\nstudent: {name: mlp}\n" + fragment + "\n")
    code = (f"from kdkit.families.classification.config import load_config\nfrom kdkit.errors import ConfigError\n"
            f"try:\n    load_config({str(path)!r})\nexcept ConfigError:\n    pass\nelse:\n    raise SystemExit(1)")
    loaded = _modules_after(code)
    # torch may load (the model registry checks names and arguments), nothing heavier: 1x `import torch` at most
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_an_unknown_model_is_a_config_error_naming_the_key_and_the_closest_name(tmp_path: Path) -> None:
    from kdkit.errors import ConfigError
    from kdkit.families.classification.config import load_config

    path = tmp_path / "bad.yaml"
    path.write_text("teacher: {name: cnn1dd}\nstudent: {name: mlp, params: {hiden: [8]}}\n")
    with pytest.raises(ConfigError, match=r"at teacher: unknown model 'cnn1dd'; did you mean 'cnn1d'\?"):
        load_config(path)
    path.write_text("teacher: {name: cnn1d}\nstudent: {name: mlp, params: {hiden: [8]}}\n")
    with pytest.raises(ConfigError, match=r"at student: model 'mlp' got unknown argument\(s\) \['hiden'\]; it takes"):
        load_config(path)


def test_the_tabular_help_needs_no_tabular_library() -> None:
    loaded = _modules_after("from kdkit.families.tabular.cli import app")
    assert not loaded & {*HEAVY, "torch", "lightgbm", "catboost", "xgboost"}
