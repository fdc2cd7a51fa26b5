"""The one training loop (loop: `fit`, `predict`, validation) and its parts: the scheme interface it sees (step),
train settings, progress, resumable state, mixed precision and compilation (acceleration), and the teacher outputs
it computes once (teacher_cache, view_cache).

`fit`, `predict` and `FitResult` are imported on first use (PEP 562), so that reading train settings
(kdkit.trainer.settings) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"FitResult": "kdkit.trainer.loop", "fit": "kdkit.trainer.loop", "predict": "kdkit.trainer.loop"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kdkit.trainer' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)
