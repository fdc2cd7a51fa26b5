"""Small image folders written at test time: root/<split>/<class>/<i>.png|jpg, the class readable from the pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("normal", "pneumonia")


def pixels(label: int, rng: np.random.Generator, h: int = 24, w: int = 20) -> np.ndarray:
    """A grey image whose bright half (top for class 0, bottom for class 1) tells the class; a left-right flip
    keeps the class, as for the augmentation."""
    a = rng.integers(0, 60, size=(h, w)).astype(np.uint8)
    a[: h // 2] += 150 * (label == 0)
    a[h // 2:] += 150 * (label == 1)
    return a


def make_folder(root: Path, counts: dict[str, int], classes=CLASSES, seed: int = 0) -> Path:
    """root/<split>/<class>/<i>.png|jpg with `counts[split]` images per class, alternating PNG and JPEG."""
    rng = np.random.default_rng(seed)
    for split, n in counts.items():
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = Image.fromarray(pixels(label, rng), "L").convert("RGB")
                img.save(folder / (f"{i:03d}.jpg" if i % 2 else f"{i:03d}.png"))
    return root
