"""Fashion-MNIST (Xiao et al. 2017) read from Debian's package ``dataset-fashion-mnist``: nothing is downloaded.

The package installs the four gzipped idx files of the original release in /usr/share/datasets/fashion-mnist/:
60,000 training and 10,000 test images of 28x28 grey pixels, 10 classes of clothing. They are parsed here with
numpy (magic number, dimensions and length are checked, so a damaged file is one line naming it) and decoded once
per process (an LRU cache keyed on path, modification time and size), which keeps repeated loads of small slices
fast. Images become float32 (1, 28, 28) tensors in [0, 1].

Splits, all stratified by class and reproducible:

- val: ``val_fraction`` of the 60,000 training images, drawn with the run seed (as the built-in sources do);
- train: the rest, or ``train_size`` of it drawn with the run seed (for quick runs and benchmarks);
- transfer: ``transfer_size`` further training images, from those left out of train and val, their labels
  hidden (-1) so only the teacher labels them;
- test: the 10,000 test images, or ``test_size`` of them drawn with a fixed seed, so runs with different seeds
  are scored on the same images.
"""

from __future__ import annotations

import functools
import gzip
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, PositiveInt

from kdkit.config.types import LaxPath
from kdkit.data.builtin import DataBundle, _split_val, _tensors
from kdkit.data.source import ClassificationSource
from kdkit.errors import ConfigError, DataError
from kdkit.labels import UNLABELLED

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot"]
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
IMAGE_MAGIC, LABEL_MAGIC = 0x00000803, 0x00000801  # idx: two zero bytes, type 0x08 (unsigned byte), number of dims
SIDE = 28
TEST_SEED = 0  # the test subset does not follow the run seed: every seed is scored on the same images
_VAL, _TRAIN, _TRANSFER, _TEST = range(4)  # independent random streams per split


def _decode(path: Path, magic: int, shape_tail: tuple[int, ...]) -> np.ndarray:
    """The array an idx file holds, after checking that it is one of `magic` with (N, *shape_tail) entries."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path} is damaged: cannot decompress it ({err}); reinstall dataset-fashion-mnist") from None
    ndim = 1 + len(shape_tail)
    header = 4 + 4 * ndim
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if found != magic:
        shown = f"{found:#010x}" if found is not None else f"only {len(raw)} bytes"
        raise DataError(f"{path} is not a Fashion-MNIST idx file of this kind (magic number {shown}, expected "
                        f"{magic:#010x}); the file is damaged or misnamed")
    if len(raw) < header:
        raise DataError(f"{path} is truncated: {len(raw)} bytes, shorter than its {header}-byte header")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if dims[1:] != shape_tail:
        raise DataError(f"{path} holds entries of shape {dims[1:]}, expected {shape_tail}; not Fashion-MNIST")
    need, have = math.prod(dims), len(raw) - header
    if have != need:
        raise DataError(f"{path} is {'truncated' if have < need else 'too long'}: its header announces "
                        f"{dims[0]} entries ({need} bytes) but {have} bytes follow; reinstall dataset-fashion-mnist")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


@functools.lru_cache(maxsize=8)
def _cached(path: str, mtime_ns: int, size: int, magic: int, shape_tail: tuple[int, ...]) -> np.ndarray:
    # mtime and size are part of the key so that a file replaced on disk is read again
    array = _decode(Path(path), magic, shape_tail)
    array.flags.writeable = False  # shared by every caller: nobody may change the cached copy
    return array


def _read(path: Path, magic: int, shape_tail: tuple[int, ...]) -> np.ndarray:
    stat = path.stat()
    return _cached(str(path.resolve()), stat.st_mtime_ns, stat.st_size, magic, shape_tail)


def read_split(root: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 28, 28) and uint8 labels (N,) of 'train' or 'test', read-only and cached per process."""
    root = Path(root)
    if not all((root / name).is_file() for pair in FILES.values() for name in pair):  # all four, or say so once
        raise DataError(f"Fashion-MNIST not found in {root}: install Debian's package dataset-fashion-mnist "
                        "(apt-get install dataset-fashion-mnist) or set data.root to a folder holding the four "
                        "idx files")
    paths = [root / name for name in FILES[split]]
    images = _read(paths[0], IMAGE_MAGIC, (SIDE, SIDE))
    labels = _read(paths[1], LABEL_MAGIC, ())
    if len(images) != len(labels):
        raise DataError(f"{paths[1]} has {len(labels)} labels for the {len(images)} images of {paths[0]}; "
                        "one of the files is damaged")
    if labels.size and labels.max() >= len(CLASS_NAMES):
        raise DataError(f"{paths[1]} holds label {int(labels.max())}, outside 0-{len(CLASS_NAMES) - 1}; "
                        "the file is damaged")
    return images, labels


def stratified_pick(
    idx: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`n` of the indices `idx` (into `labels`), each class in proportion to its share (largest remainders);
    returns (picked, rest), both sorted."""
    classes, counts = np.unique(labels[idx], return_counts=True)
    quota = counts * n / len(idx)
    take = np.floor(quota).astype(int)
    extra = np.argsort(-(quota - take), kind="stable")[: n - int(take.sum())]
    take[extra] += 1
    picked = np.concatenate([rng.choice(idx[labels[idx] == c], size=k, replace=False)
                             for c, k in zip(classes, take, strict=True)])
    picked.sort()
    return picked, np.setdiff1d(idx, picked)


@dataclass(frozen=True)
class SplitIndices:
    """Which images each split holds: train, val and transfer index the training file, test the test file."""

    train: np.ndarray
    val: np.ndarray
    transfer: np.ndarray
    test: np.ndarray


def split_indices(
    train_labels: np.ndarray, test_labels: np.ndarray, seed: int = 0, val_fraction: float = 0.1,
    train_size: int | None = None, transfer_size: int = 0, test_size: int | None = None,
) -> SplitIndices:
    """The split of Fashion-MNIST a config asks for (see the module docstring); a size that cannot be met is one
    ConfigError line saying how many images are available."""
    all_train = np.arange(len(train_labels))
    train, val, _, _ = _split_val(all_train, train_labels, val_fraction, seed)
    train, val = np.sort(train), np.sort(val)
    rest = np.empty(0, dtype=train.dtype)
    if train_size is not None:
        if train_size > len(train):
            raise ConfigError(f"data.train_size {train_size} is more than the {len(train)} training images left "
                              f"after the validation split; set data.train_size <= {len(train)}")
        train, rest = stratified_pick(train, train_labels, train_size, np.random.default_rng([seed, _TRAIN]))
    transfer = rest[:0]
    if transfer_size:
        if transfer_size > len(rest):
            raise ConfigError(f"data.transfer_size {transfer_size} is more than the {len(rest)} training images "
                              f"left over after train_size and the validation split; set data.transfer_size <= "
                              f"{len(rest)} or a smaller data.train_size")
        transfer, _ = stratified_pick(rest, train_labels, transfer_size, np.random.default_rng([seed, _TRANSFER]))
    test = np.arange(len(test_labels))
    if test_size is not None:
        if test_size > len(test):
            raise ConfigError(f"data.test_size {test_size} is more than the {len(test)} test images; "
                              f"set data.test_size <= {len(test)}")
        test, _ = stratified_pick(test, test_labels, test_size, np.random.default_rng([TEST_SEED, _TEST]))
    return SplitIndices(train=train, val=val, transfer=transfer, test=test)


def _images(images: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return (images[idx].astype(np.float32) / 255.0)[:, None]


def fashion_mnist(
    root: str | Path = DEFAULT_ROOT, seed: int = 0, val_fraction: float = 0.1, train_size: int | None = None,
    transfer_size: int = 0, test_size: int | None = None,
) -> DataBundle:
    """Fashion-MNIST as a DataBundle of (1, 28, 28) float images in [0, 1]; see the module docstring."""
    x_train, y_train = read_split(root, "train")
    x_test, y_test = read_split(root, "test")
    s = split_indices(y_train, y_test, seed=seed, val_fraction=val_fraction, train_size=train_size,
                      transfer_size=transfer_size, test_size=test_size)
    transfer = None
    if len(s.transfer):
        transfer = _tensors(_images(x_train, s.transfer), np.full(len(s.transfer), UNLABELLED))
    return DataBundle(
        train=_tensors(_images(x_train, s.train), y_train[s.train]),
        val=_tensors(_images(x_train, s.val), y_train[s.val]),
        test=_tensors(_images(x_test, s.test), y_test[s.test]),
        num_classes=len(CLASS_NAMES), input_shape=(1, SIDE, SIDE), transfer=transfer, class_names=list(CLASS_NAMES),
    )


class FashionMnistSource(ClassificationSource):
    """fashion_mnist: Zalando's Fashion-MNIST from Debian's dataset-fashion-mnist (or any folder of its idx files)."""

    name: Literal["fashion_mnist"] = "fashion_mnist"
    root: LaxPath | None = Field(None, description="holds the four idx files (default: Debian's folder)")
    train_size: PositiveInt | None = Field(None, description="labelled training images kept after the validation "
                                           "split (stratified, by seed); default all")
    test_size: PositiveInt | None = Field(None, description="test images kept (stratified, fixed); default all "
                                          "10,000")

    def load(self, seed: int) -> DataBundle:
        return fashion_mnist(
            root=self.root if self.root is not None else DEFAULT_ROOT, seed=seed, val_fraction=self.val_fraction,
            train_size=self.train_size, transfer_size=self.transfer_size, test_size=self.test_size,
        )


__all__ = ["CLASS_NAMES", "DEFAULT_ROOT", "SplitIndices", "FashionMnistSource", "fashion_mnist", "read_split",
           "split_indices", "stratified_pick"]
