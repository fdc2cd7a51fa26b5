"""Using a trained model afterwards: `kdkit.load(run_dir, model="student_kd")` and `kdkit predict`.

The model is rebuilt from the run's config.yaml and models/meta.json alone (no data is loaded: the training
images or texts may be gone), its weights read from models/<role>.safetensors, and it is handed back in eval
mode with what predicting needs: class names, input shape, the preprocessing of image runs and the vocabulary
of text runs. A quantization-aware student comes back as its int8 conversion, the model the table measured.

A raw-text run (``data.raw_text``) gives back the module it trained: an ``hf:`` model that tokenizes the text with
the tokenizer of its folder, a word model wrapped to encode it with the run's vocabulary; both read the texts'
UTF-8 bytes (:func:`kdkit.models.raw_text.encode_texts`), which is what :meth:`LoadedModel.read` gives them.
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


def load(run_dir: str | Path, model: str = "student_kd", device: str = "cpu") -> Any:
    """The run's `model` (teacher, student_alone or student_kd), in eval mode on `device`: a LoadedModel for a
    classification run, a kdkit.lm.LoadedLM for a language-model run and a fitted scikit-learn classifier for a
    tabular run (kdkit.families.tabular.load.load_role)."""
    from kdkit.families.classification.pipeline import run_config
    from kdkit.io.checkpoint import load_weights
    from kdkit.models.quantization import convert_quantized
    from kdkit.run.meta import VOCAB, read_meta, weights_file

    if model not in ROLES:
        raise ConfigError(f"unknown model '{model}'; choose one of: {', '.join(ROLES)}")
    run_dir = Path(run_dir)
    kind = run_kind(run_dir)
    if kind == "lm":
        from kdkit.families.lm.commands import load_lm

        return load_lm(run_dir, model, device)
    if kind == "tabular":
        from kdkit.families.tabular.load import load_role

        return load_role(run_dir, model)
    cfg = run_config(run_dir, roles=(model,))
    meta = read_meta(run_dir)
    vocab = None
    if meta["kind"] == "text":
        from kdkit.data.vocabulary import Vocabulary

        vocab = Vocabulary.load(run_dir / VOCAB)
    raw_text = cfg.data.keeps_raw_text()  # the config says it for runs whose meta.json predates the flag
    if raw_text and not (meta.get("preprocessing") or {}).get("raw_text"):
        from kdkit.data.raw_text import DEFAULT_MAX_BYTES
        from kdkit.run.meta import RAW_TEXT

        meta["preprocessing"] = {**meta["preprocessing"], "raw_text": True, "max_bytes": DEFAULT_MAX_BYTES,
                                 "tokenizer": RAW_TEXT}
    net, int8 = _build(run_dir, cfg, meta, model, vocab if raw_text else None)
    load_weights(net, weights_file(run_dir, model))
    net = convert_quantized(net) if int8 else net.to(device)
    net.eval()
    return LoadedModel(net, model, list(meta["class_names"]), tuple(meta["input_shape"]), meta["kind"],
                       meta.get("preprocessing"), vocab, meta, getattr(cfg.data, "text_column", "text"))


def _build(run_dir: Path, cfg: Any, meta: dict[str, Any], role: str, vocab: Any) -> tuple[nn.Module, bool]:
    """The untrained model of `role` as the run built it (wrapped to read raw text when `vocab` is given), and
    whether it is a quantization-aware student (to be converted to int8 once its weights are in)."""
    from kdkit.errors import KdkitError, RunDirError
    from kdkit.models import build_from_config
    from kdkit.models.quantization import prepare_qat
    from kdkit.trainer.loop import seed_everything

    shape = tuple(meta["input_shape"])
    data = SimpleNamespace(input_shape=shape, num_classes=meta["num_classes"], model_kwargs=meta["model_kwargs"])
    if vocab is not None:
        from kdkit.data.raw_text import reading_raw_text

        data.wrap_model = lambda name, net: reading_raw_text(name, net, vocab)
    student = role != "teacher"
    spec = cfg.student if student else cfg.teacher
    seed_everything(cfg.seed + (1 if student else 0))  # the same start as training; the weights replace it anyway
    try:
        net = build_from_config(spec, data)
    except KdkitError as err:
        if spec.name.startswith(("hf:", "hf_lm:")):  # the architecture and the tokenizer live in that folder
            raise RunDirError(f"cannot load the {role} of {run_dir}: it is {spec.name}, whose folder holds its "
                              f"architecture and tokenizer ({err}); put the folder back there") from None
        raise
    int8 = student and cfg.student.quantize is not None
    if int8:
        dtype = torch.long if meta["input_dtype"].startswith("int") else torch.float32
        net = prepare_qat(net, torch.zeros((2, *shape), dtype=dtype), cfg.student.quantize)
    return net, int8


def run_kind(run_dir: str | Path) -> str:
    """'lm', 'tabular' or 'classification', from the run's results.json or config.yaml (classification when neither
    says otherwise, so the classification reader gives its own error for a damaged directory)."""
    import json

    import yaml

    run_dir = Path(run_dir)
    for name, read in (("results.json", json.loads), ("config.yaml", yaml.safe_load)):
        try:
            kind = read((run_dir / name).read_text(encoding="utf-8")).get("kind")
        except (OSError, ValueError, AttributeError, yaml.YAMLError):
            continue
        if kind in ("lm", "tabular"):
            return kind
    return "classification"
