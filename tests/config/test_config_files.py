"""Shipped configs stay true (the examples of the documentation: tests/docs/test_doc_examples.py)."""

from pathlib import Path

import pytest

from kdkit.families.classification.config import load_config
from kdkit.families.classification.demo import demo_config

ROOT = Path(__file__).resolve().parents[2]


def test_demo_yaml_is_the_demo():
    assert load_config(ROOT / "configs" / "demo.yaml").model_dump() == demo_config().model_dump()


@pytest.mark.parametrize(("path", "task"), [("text_reviews.yaml", "text"), ("tagging.yaml", "tagging")])
def test_other_demos_are_their_shipped_configs(path, task):
    shipped = load_config(ROOT / "configs" / path)
    assert shipped.model_dump() == demo_config(output_dir=shipped.output_dir, task=task).model_dump()


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(path, tmp_path, monkeypatch):
    from kdkit.families.base import family_of_config

    monkeypatch.chdir(tmp_path)  # model folders are checked as a config is read: the one a header says to export
    (tmp_path / "models" / "all-MiniLM-L6-v2").mkdir(parents=True)
    family_of_config(path).load_config(path, [], None)  # as `kdkit train` reads it: by the family the config is of


def test_the_demo_configs_shipped_in_the_package_are_the_files_in_configs():
    """`kdkit demo` reads the copies inside the package (an installed kdkit has no configs/ folder); they are the
    repository's configs/ byte for byte, so `kdkit train configs/NAME.yaml` runs what the demo runs."""
    from kdkit.families.classification.demo import DEMOS

    shipped = sorted((ROOT / "src" / "kdkit" / "config" / "demos").glob("*.yaml"))
    assert [p.name for p in shipped] == sorted([*DEMOS.values(), "lm_addition.yaml"])
    for path in shipped:
        assert path.read_bytes() == (ROOT / "configs" / path.name).read_bytes(), path.name


def test_the_demos_hold_no_python_copy_of_a_config():
    import ast

    import kdkit.families.classification.demo as classification_demo
    import kdkit.families.lm.demo as lm_demo

    for module in (classification_demo, lm_demo):
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        keys = {k.value for n in ast.walk(tree) if isinstance(n, ast.Dict)
                for k in n.keys if isinstance(k, ast.Constant)}
        assert not keys & {"data", "train", "teacher", "student", "distill", "losses"}, module.__name__
