"""Shipped configs stay true (the examples of the documentation: tests/test_doc_examples.py)."""

from pathlib import Path

import pytest

from kdkit.families.classification.config import load_config
from kdkit.families.classification.demo import demo_config

ROOT = Path(__file__).resolve().parents[1]


def test_demo_yaml_is_the_demo():
    assert load_config(ROOT / "configs" / "demo.yaml").model_dump() == demo_config().model_dump()


@pytest.mark.parametrize(("path", "task"), [("text_reviews.yaml", "text"), ("tagging.yaml", "tagging")])
def test_other_demos_are_their_shipped_configs(path, task):
    shipped = load_config(ROOT / "configs" / path)
    assert shipped.model_dump() == demo_config(output_dir=shipped.output_dir, task=task).model_dump()


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(path, tmp_path, monkeypatch):
    from kdkit.families.lm.config import load_lm_config

    monkeypatch.chdir(tmp_path)  # model folders are checked as a config is read: the one a header says to export
    (tmp_path / "models" / "all-MiniLM-L6-v2").mkdir(parents=True)
    load_lm_config(path) or load_config(path)  # as `kdkit train` reads it: a language-model config, or the other kind
