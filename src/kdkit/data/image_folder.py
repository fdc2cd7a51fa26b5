"""Images from a folder laid out as torchvision's ImageFolder expects, one folder per split:

    root/train/<class>/*.jpg      required
    root/val/<class>/*.jpg        optional: without it, `val_fraction` of train is held out (stratified, by seed)
    root/test/<class>/*.jpg       required
    root/unlabelled/**/*.jpg      optional: images without labels, a transfer set that only the teacher labels

Classes are the sorted sub-folder names of train/, and that one class-to-index map is used for every split;
val/ and test/ must have exactly the same classes (a class missing from test/ would leave a row of the report
empty, and a class only in test/ can never be predicted), so any difference is an error naming the class.

Every image is decoded once, when the data is loaded: converted to the model's channels (grayscale -> RGB, or
anything -> grayscale), resized to `image_size` and kept in memory as uint8 (N x C x H x W bytes in all, about
0.9 GB for 5,900 RGB images at 224x224). Decoding once is what makes CPU training on a few thousand large JPEGs
practical, and it doubles as the check of every file: an unreadable or corrupt image is found here, before any
training, and is either skipped with a warning that names it (`on_bad_image: skip`) or stops the run with an
error listing how many there are (`on_bad_image: error`, the default). Per-sample work at training time is
only the random horizontal flip (`augment`), the random shift (`random_crop`: pad by that many pixels, mirrored,
then crop back to size) and normalisation (ImageNet statistics by default).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor
from torch.utils.data import Dataset

from kdkit.config.types import LaxPath, PixelSize, StrictModel
from kdkit.data.builtin import DataBundle
from kdkit.data.source import ClassificationSource
from kdkit.errors import ConfigError, DataError, KdkitWarning
from kdkit.labels import UNLABELLED

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".pbm", ".bmp", ".gif", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_HIGH_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")  # 16/32-bit grey: PIL's convert("L") clips them


class SkippedImagesWarning(KdkitWarning):
    """Some image files could not be read and were left out (data.on_bad_image: skip)."""


@dataclass
class ScannedSplit:
    """One split decoded into memory: uint8 images (N, C, H, W), labels and the files they came from."""

    images: Tensor
    labels: Tensor
    files: list[Path]
    skipped: list[tuple[Path, str]] = field(default_factory=list)


class ImageTensors(Dataset):
    """Decoded images as (x, y): x = (uint8 / 255, optionally flipped left-right and shifted at random, - mean)
    / std."""

    def __init__(
        self, images: Tensor, labels: Tensor, mean: Sequence[float], std: Sequence[float], flip: bool = False,
        files: Sequence[Path] = (), skipped: Sequence[tuple[Path, str]] = (), crop: int = 0,
    ) -> None:
        self.images, self.labels, self.flip, self.crop = images, labels, flip, crop
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.files, self.skipped = list(files), list(skipped)

    def __len__(self) -> int:
        return len(self.labels)

    def without_augmentation(self) -> ImageTensors:
        """The same images and labels with no random flip or shift (for evaluation); shares the tensors."""
        return ImageTensors(self.images, self.labels, self.mean.flatten().tolist(), self.std.flatten().tolist(),
                            files=self.files, skipped=self.skipped)

    def rows(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """Inputs and labels of the samples at `index` as one batch, without the random flip and shift: value for
        value what __getitem__ gives before them (kdkit.trainer.view_cache renders its views from these)."""
        x = self.images[index].float().div_(255.0)
        return (x - self.mean) / self.std, self.labels[index]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x = self.images[i].float().div_(255.0)
        if self.flip and bool(torch.rand(()) < 0.5):  # global torch RNG: fixed by the trainer's seed
            x = x.flip(-1)
        if self.crop:  # a random shift of up to `crop` pixels each way, borders mirrored
            h, w = x.shape[-2:]
            padded = torch.nn.functional.pad(x, (self.crop,) * 4, mode="reflect")
            top, left = (int(v) for v in torch.randint(0, 2 * self.crop + 1, (2,)))
            x = padded[:, top:top + h, left:left + w]
        return (x - self.mean) / self.std, self.labels[i]


def normalization(normalize: Any, channels: int) -> tuple[list[float], list[float]]:
    """Mean and std per channel for 'imagenet' (grey images use the average of the RGB values), 'none' or an
    object/dict with `mean` and `std`."""
    if normalize == "imagenet":
        if channels == 3:
            return list(IMAGENET_MEAN), list(IMAGENET_STD)
        return [float(np.mean(IMAGENET_MEAN))] * channels, [float(np.mean(IMAGENET_STD))] * channels
    if normalize in ("none", None):
        return [0.0] * channels, [1.0] * channels
    mean, std = (normalize["mean"], normalize["std"]) if isinstance(normalize, dict) else (normalize.mean,
                                                                                          normalize.std)
    if len(mean) != channels or len(std) != channels or min(std) <= 0:
        raise ConfigError(f"data.normalize needs {channels} mean and std values (std > 0); got {mean}, {std}")
    return [float(v) for v in mean], [float(v) for v in std]


def _size(image_size: int | Sequence[int]) -> tuple[int, int]:
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if h < 1 or w < 1:
        raise ConfigError(f"data.image_size must be positive, got {image_size}")
    return int(h), int(w)


def class_folders(split_dir: Path) -> list[str]:
    """Sorted names of the non-hidden sub-folders (the ImageFolder convention for class order)."""
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def image_files(class_dir: Path) -> list[Path]:
    """Image files under a class folder (sub-folders included), sorted; hidden files are ignored."""
    return sorted(p for p in class_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not any(part.startswith(".") for part in p.relative_to(class_dir).parts))


def decode(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """One file as a (H, W, C) uint8 array of the requested size and channels. Raises on unreadable files."""
    from PIL import Image

    mode = "RGB" if channels == 3 else "L"
    with Image.open(path) as img:
        img.draft(mode, (size[1], size[0]))  # JPEG only: decode directly at a reduced scale, much faster
        img.load()
        if img.mode in _HIGH_BIT_MODES:
            arr = np.asarray(img, dtype=np.float64)
            arr = arr / 257.0 if arr.max() > 255 else arr  # 16-bit range -> 8-bit
            img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
        img = img.convert(mode).resize((size[1], size[0]), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def _try_decode(path: Path, size: tuple[int, int], channels: int) -> np.ndarray | str:
    try:
        return decode(path, size, channels)
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError... on bad files
        text = str(err).strip().splitlines()
        return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _check_classes(split: str, split_dir: Path, found: list[str], classes: list[str]) -> None:
    extra = [c for c in found if c not in classes]
    if extra:
        raise DataError(f"class '{extra[0]}' is in {split}/ but not in train/ ({split_dir / extra[0]}); every split "
                        "needs the same class folders: add training images for it or remove it")
    missing = [c for c in classes if c not in found]
    if missing:
        raise DataError(f"class '{missing[0]}' is in train/ but not in {split}/; add {split_dir / missing[0]}/ "
                        f"with images, or remove the class from train/")


def scan_split(
    split_dir: Path, classes: list[str], size: tuple[int, int], channels: int, on_bad_image: str = "error"
) -> ScannedSplit:
    """Decode every image of one split with the given class order; bad files are skipped (with a warning) or
    raise DataError, as `on_bad_image` says. Empty classes raise DataError."""
    split = split_dir.name
    _check_classes(split, split_dir, class_folders(split_dir), classes)
    files, labels = [], []
    for label, name in enumerate(classes):
        found = image_files(split_dir / name)
        if not found:
            raise DataError(f"class folder {split_dir / name} has no image files ({', '.join(IMAGE_EXTENSIONS)}); "
                            "add images or remove the folder from every split")
        files += found
        labels += [label] * len(found)
    scanned = _decode_all(split_dir, files, labels, size, channels, on_bad_image)
    empty = [classes[c] for c in range(len(classes)) if c not in set(scanned.labels.tolist())]
    if empty:
        raise DataError(f"no readable images left in {split_dir / empty[0]} after skipping bad files; "
                        "add readable images")
    return scanned


def scan_unlabelled(folder: Path, size: tuple[int, int], channels: int, on_bad_image: str = "error") -> ScannedSplit:
    """Decode the images of root/unlabelled/ (any sub-folders) as a transfer set: every label is -1."""
    files = image_files(folder)
    if not files:
        raise DataError(f"{folder} has no image files ({', '.join(IMAGE_EXTENSIONS)}); add unlabelled images "
                        "or remove the folder")
    return _decode_all(folder, files, [UNLABELLED] * len(files), size, channels, on_bad_image)


def _decode_all(
    where: Path, files: list[Path], labels: list[int], size: tuple[int, int], channels: int, on_bad_image: str
) -> ScannedSplit:
    """Decode `files` in threads; unreadable ones are skipped with one warning naming them, or raise DataError."""
    workers = max(1, min(8, torch.get_num_threads()))  # PIL decodes without the GIL; respect the thread budget
    with ThreadPoolExecutor(workers) as pool:
        decoded = list(pool.map(lambda p: _try_decode(p, size, channels), files))
    bad = [(p, d) for p, d in zip(files, decoded, strict=True) if isinstance(d, str)]
    if bad and on_bad_image == "error":
        raise DataError(f"{len(bad)} unreadable image(s) in {where} (first: {bad[0][0]}: {bad[0][1]}); fix or "
                        "delete them, or set data.on_bad_image: skip")
    keep = [i for i, d in enumerate(decoded) if not isinstance(d, str)]
    if bad:
        names = ", ".join(str(p) for p, _ in bad[:5]) + (f" (+{len(bad) - 5} more)" if len(bad) > 5 else "")
        warnings.warn(f"skipped {len(bad)} unreadable image(s) in {where}: {names} (first error: {bad[0][1]}); "
                      "set data.on_bad_image: error to stop instead", SkippedImagesWarning, stacklevel=3)
    if not keep:
        raise DataError(f"no readable images in {where}; add readable images")
    images = np.stack([decoded[i] for i in keep])  # (N, H, W, C)
    return ScannedSplit(
        images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        labels=torch.tensor([labels[i] for i in keep], dtype=torch.long),
        files=[files[i] for i in keep],
        skipped=bad,
    )


def _hold_out(labels: Tensor, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/val positions: stratified when every class can give one image to each side, else plain random."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    if len(index) < 2:
        raise DataError("train/ needs at least 2 images to hold out a validation split; add images or a val/ folder")
    n_val = min(max(1, round(fraction * len(index))), len(index) - 1)
    try:
        return train_test_split(index, test_size=n_val, stratify=labels.numpy(), random_state=seed)
    except ValueError:  # a class with a single image, or fewer val slots than classes
        return train_test_split(index, test_size=n_val, random_state=seed)


def image_folder(
    root: str | os.PathLike, image_size: int | Sequence[int] = 224, channels: int = 3, augment: bool = False,
    normalize: Any = "imagenet", on_bad_image: str = "error", val_fraction: float = 0.1, seed: int = 0,
    random_crop: int = 0,
) -> DataBundle:
    """Load root/{train,val,test}/<class>/<images> as a DataBundle (see the module docstring for the rules)."""
    if channels not in (1, 3):
        raise ConfigError(f"data.channels must be 1 or 3, got {channels}")
    if random_crop < 0:
        raise ConfigError(f"data.random_crop is a padding in pixels (>= 0), got {random_crop}")
    if on_bad_image not in ("skip", "error"):
        raise ConfigError(f"data.on_bad_image must be 'skip' or 'error', got {on_bad_image!r}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}; set data.root to the folder holding train/ and test/")
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DataError(f"missing split folder {root / split}; expected {root}/train/<class>/<images> and "
                            f"{root}/test/<class>/<images> (val/ is optional)")
    classes = class_folders(root / "train")
    if not classes:
        raise DataError(f"no class folders in {root / 'train'}; put the images in one sub-folder per class, "
                        f"e.g. {root / 'train' / 'cat'}/001.jpg")
    size = _size(image_size)
    mean, std = normalization(normalize, channels)

    def scan(split: str) -> ScannedSplit:
        return scan_split(root / split, classes, size, channels, on_bad_image)

    def dataset(s: ScannedSplit, rows: Sequence[int] | None = None, train: bool = False) -> ImageTensors:
        """Training sets (train, unlabelled) get the random augmentation; val and test never do."""
        flip, crop = (augment, random_crop) if train else (False, 0)
        if rows is None:
            return ImageTensors(s.images, s.labels, mean, std, flip, s.files, s.skipped, crop)
        pick = torch.as_tensor(rows, dtype=torch.long)
        return ImageTensors(s.images[pick], s.labels[pick], mean, std, flip, [s.files[i] for i in rows], s.skipped,
                            crop)

    train = scan("train")
    if (root / "val").is_dir():
        train_set, val_set = dataset(train, train=True), dataset(scan("val"))
    else:
        tr, va = _hold_out(train.labels, val_fraction, seed)
        train_set, val_set = dataset(train, sorted(tr), train=True), dataset(train, sorted(va))
    unlabelled = root / "unlabelled"
    transfer = dataset(scan_unlabelled(unlabelled, size, channels, on_bad_image), train=True) \
        if unlabelled.is_dir() else None
    return DataBundle(
        train=train_set, val=val_set, test=dataset(scan("test")), num_classes=len(classes),
        input_shape=(channels, *size), class_names=classes, transfer=transfer,
    )


class Normalization(StrictModel):
    mean: list[float] = Field(description="per-channel mean of the pixel values scaled to [0, 1]")
    std: list[float] = Field(description="per-channel standard deviation (> 0)")


class ImageFolderSource(ClassificationSource):
    """image_folder: root/train/, root/test/ (and root/val/, root/unlabelled/), one sub-folder per class."""

    name: Literal["image_folder"] = "image_folder"
    root: LaxPath | None = Field(None, description="holds train/, test/ (and val/), one folder per class")
    image_size: PixelSize = Field(224, description="resize to this side (or [height, width])")
    channels: Literal[1, 3] = Field(3, description="3 (RGB, for ImageNet models) or 1")
    augment: bool = Field(False, description="random horizontal flip of training images")
    random_crop: int = Field(0, ge=0, description="random shift of training images by up to this many pixels")
    normalize: Literal["imagenet", "none"] | Normalization = Field(
        "imagenet", description="ImageNet mean/std, none, or {mean: [...], std: [...]}")
    on_bad_image: Literal["skip", "error"] = Field(
        "error", description="skip unreadable images with a warning, or stop with an error")

    @model_validator(mode="after")
    def _usable(self) -> ImageFolderSource:
        if self.root is None:
            raise ValueError("image_folder needs root: the folder holding train/ and test/ with one folder per class")
        if self.transfer_size:
            raise ValueError("image_folder takes its transfer set from root/unlabelled/, not a generator; "
                             "set data.transfer_size: 0")
        norm = self.normalize
        if isinstance(norm, Normalization) and (
            len(norm.mean) != self.channels or len(norm.std) != self.channels or min(norm.std) <= 0
        ):
            raise ValueError(f"normalize needs {self.channels} mean and {self.channels} std values (std > 0), "
                             f"one per channel; got mean {norm.mean}, std {norm.std}")
        return self

    def random_views(self) -> bool:
        return self.augment or self.random_crop > 0

    def load(self, seed: int) -> DataBundle:
        return image_folder(
            self.root, image_size=self.image_size, channels=self.channels, augment=self.augment,
            normalize=self.normalize, on_bad_image=self.on_bad_image, val_fraction=self.val_fraction, seed=seed,
            random_crop=self.random_crop,
        )
