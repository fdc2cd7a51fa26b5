"""Batches for training and evaluation: :func:`make_loader` (seeded shuffling, whole-batch indexing of tensor
data, a DistributedSampler under torchrun) and :class:`Indexed` (batches that carry each sample's index).

The data sources and the schemes both use it, and it imports neither (kdkit.data re-exports the names, so
``from kdkit.data import make_loader`` works too).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, TensorDataset

from kdkit.distributed import init_from_env
from kdkit.errors import ConfigError, DataError
from kdkit.labels import UNLABELLED

# the batch size of every evaluation loader (validation, test, predictions): no gradients are kept, so it can be
# larger than a training batch; batching does not change the numbers, only the speed
EVAL_BATCH_SIZE = 512


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0, num_workers: int = 0) -> DataLoader:
    """A DataLoader whose shuffling order is fixed by `seed`; empty datasets are refused with a clear error.

    Under torchrun (several processes) a training loader (shuffle=True) gets a DistributedSampler, so each process
    sees its own shard of every epoch; loaders without shuffling (validation, test) stay whole on every process.
    """
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise DataError("the dataset is empty; check the data path or the split sizes")
    if shuffle and init_from_env():
        if getattr(dataset, "renders_views", False):  # its mixed labels come in whole index batches only
            raise ConfigError("distill.cached_views trains in one process; run it without torchrun")
        sampler = DistributedSampler(dataset, shuffle=True, seed=seed)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers)
    generator = torch.Generator().manual_seed(seed)
    if _indexes_whole_batches(dataset):
        # one tensor index per batch instead of one __getitem__ per sample and a stack: for small models the
        # per-sample path costs more than the training step. The batches are exactly the default loader's (tested).
        return DataLoader(dataset, batch_size=None, sampler=IndexBatches(len(dataset), batch_size, shuffle, generator),
                          generator=generator, num_workers=num_workers)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, num_workers=num_workers)


class IndexBatches(Sampler[Tensor]):
    """The index batches of ``BatchSampler(RandomSampler(n, generator=g), batch_size, drop_last=False)`` (or of a
    SequentialSampler), as slices of one index tensor: the same draw from `generator` (one randperm per epoch),
    without turning the permutation into Python ints and each batch back into a tensor (tens of microseconds per
    batch, which a small model's step notices)."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, generator: torch.Generator) -> None:
        self.n, self.batch_size, self.shuffle, self.generator = n, batch_size, shuffle, generator

    def __iter__(self) -> Iterator[Tensor]:
        order = torch.randperm(self.n, generator=self.generator) if self.shuffle else torch.arange(self.n)
        batches = order.split(self.batch_size)
        full = self.n // self.batch_size
        yield from batches[:full]
        if self.shuffle:  # RandomSampler, once exhausted, draws a second permutation it uses none of: so do we
            torch.randperm(self.n, generator=self.generator)
        yield from batches[full:]

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)


def _indexes_whole_batches(dataset: Dataset) -> bool:
    """Whether `dataset[list_of_indices]` gives a whole batch: a TensorDataset, or Indexed around one."""
    inner = dataset.dataset if isinstance(dataset, Indexed) else dataset
    return type(inner) is TensorDataset or getattr(dataset, "takes_index_batches", False)


class Indexed(Dataset):
    """Wraps a dataset of (x, y) (or of bare inputs x, labelled UNLABELLED) so batches are dicts {"x", "y",
    "index"}: lets a scheme cache per-sample teacher outputs (see OfflineDistillation's cache_size). kdkit's one
    indexing wrapper: the pipeline, language-model runs and data-free distillation all use it."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int | list[int] | Tensor) -> dict:
        if isinstance(i, (list, Tensor)):  # a whole batch (make_loader): one index tensor serves every field
            index = torch.as_tensor(i)
            x, y = _inputs_and_labels(self.dataset[index], len(i))
            return {"x": x, "y": y, "index": index}
        x, y = _inputs_and_labels(self.dataset[i], None)
        return {"x": x, "y": y, "index": i}


def _inputs_and_labels(item: Any, batch: int | None) -> tuple[Any, Any]:
    """(x, y) of an item, or of a whole batch of `batch` rows; an item without a label (a bare input, as synthetic
    or transfer inputs may be) gets UNLABELLED."""
    if isinstance(item, torch.Tensor):
        item = (item,)
    if len(item) > 1:
        return item[0], item[1]
    return item[0], UNLABELLED if batch is None else torch.full((batch,), UNLABELLED, dtype=torch.long)


__all__ = ["Indexed", "make_loader"]
