"""make_loader indexes a TensorDataset a whole batch at a time; the batches must be exactly those of PyTorch's
default per-sample loader with the same seed, so results and resumed runs do not change."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from kdkit.data import Indexed, make_loader


@pytest.mark.parametrize("n", [300, 256])  # a last batch shorter than the others, and none
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("indexed", [False, True])
def test_batched_indexing_gives_the_default_loaders_batches(shuffle: bool, indexed: bool, n: int) -> None:
    data = TensorDataset(torch.randn(n, 4), torch.randint(0, 3, (n,)))
    dataset = Indexed(data) if indexed else data
    fast = make_loader(dataset, 64, shuffle, seed=5)
    assert fast.batch_size is None  # the batched path was taken
    default = DataLoader(dataset, batch_size=64, shuffle=shuffle, generator=torch.Generator().manual_seed(5))
    assert len(fast) == len(default) == (5 if n == 300 else 4)
    for _epoch in range(2):  # the second epoch's shuffle continues from the same generator state
        for a, b in zip(fast, default, strict=True):
            pairs = [(a[k], b[k]) for k in ("x", "y", "index")] if indexed else list(zip(a, b, strict=True))
            assert all(torch.equal(u, v) for u, v in pairs)
    assert torch.equal(fast.generator.get_state(), default.generator.get_state())


def test_other_datasets_keep_the_per_sample_loader() -> None:
    subset = torch.utils.data.Subset(TensorDataset(torch.randn(10, 2), torch.zeros(10, dtype=torch.long)), [1, 2])
    assert make_loader(subset, 4, shuffle=True).batch_size == 4
