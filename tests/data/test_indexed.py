"""kdkit.data.loaders.Indexed is the one indexing wrapper: labelled and unlabelled inputs, one sample
or a whole batch at a time, give the same {"x", "y", "index"} items."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

import kdkit.data.loaders
from kdkit.data.loaders import Indexed, make_loader
from kdkit.labels import UNLABELLED


@pytest.mark.parametrize("shuffle", [True, False])
def test_bare_inputs_are_unlabelled_per_sample_and_per_batch(shuffle: bool) -> None:
    x = torch.randn(10, 3)
    per_sample = make_loader(Indexed([row for row in x]), 4, shuffle, seed=1)  # a list: the per-sample loader
    batched = make_loader(Indexed(TensorDataset(x)), 4, shuffle, seed=1)        # a TensorDataset: whole batches
    assert per_sample.batch_size == 4 and batched.batch_size is None
    for a, b in zip(per_sample, batched, strict=True):
        assert torch.equal(a["x"], b["x"]) and torch.equal(a["index"], b["index"])
        assert a["y"].tolist() == b["y"].tolist() == [UNLABELLED] * len(a["index"])
        assert torch.equal(a["x"], x[a["index"]])


def test_labelled_items_keep_their_labels() -> None:
    x, y = torch.randn(6, 2), torch.tensor([0, 1, 2, UNLABELLED, 1, 0])
    item = Indexed(TensorDataset(x, y))[3]
    assert item["y"] == UNLABELLED and item["index"] == 3 and torch.equal(item["x"], x[3])
    batch = Indexed(TensorDataset(x, y))[[1, 4]]
    assert batch["y"].tolist() == [1, 1] and batch["index"].tolist() == [1, 4]


def test_no_other_indexing_wrapper_is_defined() -> None:
    src = Path(kdkit.data.loaders.__file__).parent
    wrappers = [f"{p.relative_to(src)}:{n.name}" for p in sorted(src.rglob("*.py"))
                for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
                if isinstance(n, ast.ClassDef) and "indexed" in n.name.lower()]
    assert wrappers == ["loaders.py:Indexed"]
