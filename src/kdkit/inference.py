"""Using a trained model afterwards: `kdkit.load(run_dir, model="student_kd")` and `kdkit predict`.

The model is rebuilt from the run's config.yaml and models/meta.json alone (no data is loaded: the training
images or texts may be gone), its weights read from models/<role>.safetensors, and it is handed back in eval
mode with what predicting needs: class names, input shape, the preprocessing of image runs and the vocabulary
of text runs. A quantization-aware student comes back as its int8 conversion, the model the table measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from kdkit.errors import ConfigError

ROLES = ("teacher", "student_alone", "student_kd")


@dataclass
class LoadedModel:
    """A run's trained model, ready to predict, with what it needs to read new inputs."""

    model: nn.Module
    role: str
    class_names: list[str]
    input_shape: tuple[int, ...]
    kind: str  # tensor, image or text (see kdkit.runmeta)
    preprocessing: dict[str, Any] | None
    vocab: Any = None  # kdkit.data.text.Vocabulary for text runs
    meta: dict[str, Any] = field(default_factory=dict)

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

    def read(self, path: str | Path) -> tuple[list[str], Tensor, list[Any]]:
        """(names, model inputs, raw items) of a file or folder, preprocessed as at training time."""
        from kdkit.inputs import read_inputs

        return read_inputs(path, self.meta, self.vocab)


def load(run_dir: str | Path, model: str = "student_kd", device: str = "cpu") -> LoadedModel:
    """The run's `model` (teacher, student_alone or student_kd), in eval mode on `device`."""
    from kdkit.checkpoint import load_weights
    from kdkit.models import build_from_config
    from kdkit.pipeline import run_config
    from kdkit.quantization import convert_quantized, prepare_qat
    from kdkit.runmeta import VOCAB, read_meta
    from kdkit.trainer import seed_everything

    if model not in ROLES:
        raise ConfigError(f"unknown model '{model}'; choose one of: {', '.join(ROLES)}")
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    meta = read_meta(run_dir)
    shape = tuple(meta["input_shape"])
    data = SimpleNamespace(input_shape=shape, num_classes=meta["num_classes"], model_kwargs=meta["model_kwargs"])
    student = model != "teacher"
    seed_everything(cfg.seed + (1 if student else 0))  # the same start as training; the weights replace it anyway
    net = build_from_config(cfg.student if student else cfg.teacher, data)
    int8 = student and cfg.student.quantize is not None
    if int8:
        dtype = torch.long if meta["input_dtype"].startswith("int") else torch.float32
        net = prepare_qat(net, torch.zeros((2, *shape), dtype=dtype), cfg.student.quantize)
    load_weights(net, run_dir / "models" / f"{model}.safetensors")
    net = convert_quantized(net) if int8 else net.to(device)
    net.eval()
    vocab = None
    if meta["kind"] == "text":
        from kdkit.data.vocabulary import Vocabulary

        vocab = Vocabulary.load(run_dir / VOCAB)
    return LoadedModel(net, model, list(meta["class_names"]), shape, meta["kind"], meta.get("preprocessing"), vocab,
                       meta)
