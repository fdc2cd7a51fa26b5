"""Shipped configs and README examples stay true."""

import re
from pathlib import Path

import pytest
import yaml

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


def test_readme_python_examples_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks, "the README should show the Python API"
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__"}  # one namespace, read top to bottom: later blocks reuse earlier names
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)


def test_readme_tune_section_is_a_valid_search_space_for_the_demo():
    from kdkit.families.classification.config import parse_config
    from kdkit.families.classification.tune import check_space

    raw = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    block = re.search(r"```yaml\n(tune:.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "the README should show a tune: section"
    raw.update(yaml.safe_load(block.group(1)))
    check_space(parse_config(raw))  # both ends of every range give a valid config
