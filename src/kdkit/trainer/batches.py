"""Batches as the trainer reads them (a tensor, a tuple (x, y, ...) or a dict with named inputs and labels), moved
to the device training runs on."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from kdkit.errors import DataError


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def split_batch(batch: Any, device: torch.device) -> tuple[Tensor, Tensor | None]:
    """(x, y) from a batch given as a tensor, (x,), (x, y, ...) or a dict with 'x'/'input' and 'y'/'label(s)'."""
    return _split(batch, device)[:2]


def _split(batch: Any, device: torch.device) -> tuple[Tensor, Tensor | None, Tensor | None]:
    index = None
    if isinstance(batch, dict):
        index = batch.get("index")
        x = next((batch[k] for k in ("x", "input", "inputs", "image", "pixel_values") if k in batch), None)
        y = next((batch[k] for k in ("y", "label", "labels", "target") if k in batch), None)
        if x is None:
            raise DataError(f"batch dict has no input key ('x', 'input', 'image'...); keys: {sorted(batch)}")
    elif isinstance(batch, Tensor):
        x, y = batch, None
    else:
        x, y = batch[0], (batch[1] if len(batch) > 1 else None)
    return x.to(device, non_blocking=True), (y.to(device, non_blocking=True) if y is not None else None), index
