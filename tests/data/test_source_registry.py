"""A data source is one class beside its loader: its options (a pydantic model keyed on `name`) and
how it loads; the config validates `data` with them and the pipeline calls their `load`. Nothing else lists sources."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch
from pydantic import Field
from torch.utils.data import TensorDataset

import kdkit
from kdkit.data import DataBundle, build_data
from kdkit.data.source import CLASSIFICATION, LM, SOURCES, ClassificationSource, source_options, sources
from kdkit.errors import ConfigError
from kdkit.families.classification.config import parse_config
from kdkit.families.classification.pipeline import run

SRC = Path(kdkit.__file__).parent
MODELS = {"teacher": {"name": "mlp", "params": {"hidden": [16]}}, "student": {"name": "mlp", "params": {"hidden": [8]}}}


def test_every_source_is_declared_beside_its_loader() -> None:
    assert set(sources(CLASSIFICATION)) == {"mnist1d", "digits", "fashion_mnist", "image_folder", "text_files",
                                           "synthetic_reviews", "synthetic_tagging", "rotten_tomatoes"}
    assert set(sources(LM)) == {"synthetic_addition", "lm_files"}
    for name, options in {**sources(CLASSIFICATION), **sources(LM)}.items():
        module = sys.modules[options.__module__]
        assert hasattr(module, "__file__") and options.__module__.startswith("kdkit.data."), name


def test_the_config_and_the_data_package_name_no_source() -> None:
    names = [*sources(CLASSIFICATION), *sources(LM)]
    quoted = re.compile("|".join(rf"[\"']{n}[\"']" for n in names))
    for path in (SRC / "families" / "classification" / "config.py", SRC / "data" / "__init__.py",
                 SRC / "families" / "lm" / "config.py"):
        assert [line for line in path.read_text(encoding="utf-8").splitlines() if quoted.search(line)] == [], path


def test_finding_the_sources_loads_nothing_heavier_than_torch() -> None:
    probe = ("import sys\nfrom kdkit.data.source import sources\nsources()\n"
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy', 'pandas', 'PIL', "
             "'torchvision', 'transformers', 'matplotlib'}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_an_older_run_directory_config_with_every_key_reads_back() -> None:
    """kdkit before this change wrote every data key, null where a source did not use it."""
    old = {"name": "mnist1d", "transfer_size": 0, "val_fraction": 0.1, "root": None, "train_size": None,
           "test_size": None, "image_size": None, "channels": None, "augment": None, "random_crop": None,
           "normalize": None, "on_bad_image": None, "train_file": None, "val_file": None, "test_file": None,
           "text_column": None, "label_column": None, "max_len": None, "min_freq": None, "max_vocab": None,
           "raw_text": None}
    assert source_options(old).model_dump() == {"name": "mnist1d", "transfer_size": 0, "val_fraction": 0.1}
    with pytest.raises(ValueError, match=r"max_len does not apply to data source 'mnist1d' \(only to: "
                                         "rotten_tomatoes, text_files\\)"):
        source_options({**old, "max_len": 32})


@pytest.fixture
def blobs():
    """A source written as a user would, in one class: Gaussian blobs with a key of its own. Registered when the
    class is created; unregistered afterwards (other tests list the sources)."""

    class BlobsSource(ClassificationSource):
        name: Literal["blobs"] = "blobs"
        n_per_class: int = Field(60, ge=10)

        def load(self, seed: int) -> DataBundle:
            rng = np.random.default_rng(0)
            centres = rng.normal(0, 3, (3, 4))

            def split(n: int) -> TensorDataset:
                y = np.repeat(np.arange(3), n)
                x = centres[y] + rng.normal(0, 1, (len(y), 4))
                return TensorDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(y))

            return DataBundle(train=split(self.n_per_class), val=split(10), test=split(20), num_classes=3,
                              input_shape=(4,), class_names=["a", "b", "c"])

    yield BlobsSource
    SOURCES.remove("blobs", CLASSIFICATION)


def test_a_new_source_is_one_class_and_runs_through_config_and_pipeline(blobs, tmp_path) -> None:
    raw = {**MODELS, "output_dir": str(tmp_path / "run"), "train": {"epochs": 1, "progress": False},
           "data": {"name": "blobs", "n_per_class": 30}}
    cfg = parse_config(raw)
    assert isinstance(cfg.data, blobs) and len(build_data(cfg.data, 0).train) == 90
    with pytest.raises(ConfigError, match=r"at data.n_per_class: Input should be greater than or equal to 10"):
        parse_config({**raw, "data": {"name": "blobs", "n_per_class": 3}})
    with pytest.raises(ConfigError, match=r"train_size does not apply to data source 'blobs'"):
        parse_config({**raw, "data": {"name": "blobs", "train_size": 3}})
    run(cfg, quick_cost=True)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["data"]["name"] == "blobs" and results["data"]["num_classes"] == 3
