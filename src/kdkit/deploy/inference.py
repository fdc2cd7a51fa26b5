"""A trained model, loaded for use: :class:`LoadedModel` holds it in eval mode with what predicting needs (class
names, input shape, the preprocessing of image runs, the vocabulary of text runs) and reads new inputs the way the run's
data was read (kdkit.deploy.inputs). kdkit.families.classification.load builds one from a run directory
(`kdkit.load(run_dir, model="student_kd")`, `kdkit predict`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn


@dataclass
class LoadedModel:
    """A run's trained model, ready to predict, with what it needs to read new inputs."""

    model: nn.Module
    role: str
    class_names: list[str]
    input_shape: tuple[int, ...]
    kind: str  # tensor, image or text (see kdkit.run.meta)
    preprocessing: dict[str, Any] | None
    vocab: Any = None  # kdkit.data.text.Vocabulary for text runs
    meta: dict[str, Any] = field(default_factory=dict)
    text_column: str = "text"  # the column (CSV) or field (JSONL) of the texts in the run's data files

    @torch.no_grad()
    def logits(self, x: Tensor, batch_size: int = 256) -> np.ndarray:
        """Logits of model inputs (already preprocessed), in batches."""
        device = next((p.device for p in self.model.parameters()), torch.device("cpu"))
        parts = [self.model(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
        return torch.cat(parts).numpy() if parts else np.zeros((0, len(self.class_names)), np.float32)

    def predict_proba(self, x: Tensor) -> np.ndarray:
        z = self.logits(x)
        z = z - z.max(-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(-1, keepdims=True)

    def predict(self, x: Tensor) -> list[Any]:
        """Class names: one per input, or one list per text (one name per word) for sequence labelling."""
        ids = self.logits(x).argmax(-1)
        if ids.ndim == 1:
            return [self.class_names[i] for i in ids]
        return [[self.class_names[i] for i in row] for row in ids]

    @property
    def raw_text(self) -> bool:
        """Whether the model reads raw text (UTF-8 bytes) and tokenizes it itself."""
        return bool((self.preprocessing or {}).get("raw_text"))

    def read(self, path: str | Path, text_column: str | None = None) -> tuple[list[str], Tensor, list[Any]]:
        """(names, model inputs, raw items) of a file or folder, preprocessed as at training time; a text run's
        .csv / .jsonl is read from `text_column` (default: the run's own)."""
        from kdkit.deploy.inputs import read_inputs

        return read_inputs(path, self.meta, self.vocab, text_column or self.text_column)
