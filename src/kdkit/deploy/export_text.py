"""ONNX export of raw-text models (``data.raw_text: true``): the graph takes token ids, tokenization stays outside.

A raw-text model decodes UTF-8 bytes and tokenizes them inside its forward (:class:`~kdkit.models.raw_text.
WordTokenized` with kdkit's word vocabulary, :class:`~kdkit.models.hf_text.HFTextModel` with its Hugging Face
tokenizer). String handling has no ONNX form: traced, it becomes constants, and the graph would answer the same
whatever text it is given. What is exported instead is the model behind the tokenizer, with the inputs a Hugging Face
or Optimum user expects, and the tokenizer is written beside the file:

    word models  input_ids (int64, [batch, max_len]): kdkit Vocabulary ids, 0-padded on the right  -> logits
                 tokenizer: ``<name>.tokenizer/vocab.json`` (``kdkit.data.text.Vocabulary.load(...).encode(texts)``)
    hf: models   input_ids, attention_mask (and token_type_ids when the tokenizer gives them; int64, [batch,
                 sequence]) as the folder's tokenizer returns them with padding to the longest text and truncation
                 to max_tokens, so its output can be fed as it is                                  -> logits
                 tokenizer: ``<name>.tokenizer/`` (``AutoTokenizer.from_pretrained`` of that folder)

The ONNX metadata names the tokenizer folder (relative to the ONNX file), its kind and limits, and each input's
name, dtype and shape (:func:`kdkit.run.meta.input_metadata`). The check feeds ONNX Runtime the real test texts
tokenized this way and compares its logits with the PyTorch model's on the same texts as raw bytes, so the
tokenization outside the graph is checked together with the graph.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from kdkit.deploy.export import ExportReport, export_checked
from kdkit.errors import ConfigError, ModelError
from kdkit.models.hf_text import HFTextModel
from kdkit.models.raw_text import WordTokenized, decode_texts, is_raw_text
from kdkit.run.rundir import VOCAB

EXPORTED_VOCAB = Path(VOCAB).name  # the exported tokenizer folder keeps the run's vocabulary file by its own name

_HF_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # _TokenIdsClassifier.forward's order


class _TokenIdsClassifier(nn.Module):
    """An hf: model's logits from (input_ids, attention_mask): the forward that ONNX holds."""

    def __init__(self, model: HFTextModel) -> None:
        super().__init__()
        self.model = model
        self.train(model.training)  # export hands the module back in the mode it found it: the model's

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        return self.model.classify(input_ids, attention_mask, token_type_ids)


@dataclass
class TokenIdsExport:
    """What is exported for a raw-text model: the module, its tokenized check inputs, their dynamic axes, a
    description of the tokenizer for the metadata, and how to write the tokenizer's files into a folder."""

    module: nn.Module
    inputs: dict[str, Tensor]
    dynamic: dict[str, dict[int, str]]
    max_sizes: dict[str, int]
    tokenizer: dict[str, Any]
    save_tokenizer: Callable[[Path], None]

    def input_specs(self) -> dict[str, tuple[list[str | int], str]]:
        """name -> (shape with dynamic axes named, dtype), as the metadata records them."""
        return {name: ([self.dynamic[name].get(axis, size) for axis, size in enumerate(x.shape)],
                       str(x.dtype).removeprefix("torch.")) for name, x in self.inputs.items()}


def tokenizer_folder(path: str | Path) -> Path:
    """Where the tokenizer of the ONNX file `path` is written: ``<name>.tokenizer`` beside it."""
    path = Path(path)
    return path.with_name(f"{path.stem}.tokenizer")


def token_ids_export(model: nn.Module, raw: Tensor, vocab: Any = None) -> TokenIdsExport:
    """The token-id form of a raw-text `model`, with `raw` (a raw-text batch) tokenized as the model does it.
    `vocab` is the run's kdkit Vocabulary, needed for word models (its file is what serving reads)."""
    if not is_raw_text(raw):
        raise ConfigError(f"expected raw text as a uint8 tensor (batch, max_bytes), got {raw.dtype} with shape "
                          f"{tuple(raw.shape)}")
    texts = decode_texts(raw)
    if isinstance(model, HFTextModel):
        source = getattr(model.tokenizer, "name_or_path", "")
        encoded = model.tokenizer(texts, padding=True, truncation=True, max_length=model.max_tokens,
                                  return_tensors="pt")  # as model.tokenize, keeping token_type_ids if it gives them
        inputs = {name: encoded[name].long() for name in _HF_INPUTS if name in encoded}
        return TokenIdsExport(
            _TokenIdsClassifier(model), inputs, {name: {0: "batch", 1: "sequence"} for name in inputs},
            {"sequence": model.max_tokens},
            {"kind": "huggingface", "class": type(model.tokenizer).__name__, "source": str(source),
             "max_tokens": model.max_tokens, "padding": "longest", "truncation": True,
             "use": f"AutoTokenizer.from_pretrained(folder)(texts, padding=True, truncation=True, "
                    f"max_length={model.max_tokens}, return_tensors='np')"},
            lambda folder: model.tokenizer.save_pretrained(str(folder)))
    if isinstance(model, WordTokenized):
        if vocab is None:
            raise ConfigError("a word model reading raw text needs its run's vocabulary to be exported; pass vocab= "
                              f"(kdkit.data.text.Vocabulary.load('RUN_DIR/{VOCAB}'))")
        return TokenIdsExport(
            model.model, {"input_ids": model.token_ids(texts)}, {"input_ids": {0: "batch"}}, {},
            {"kind": "kdkit_words", "vocabulary": EXPORTED_VOCAB, "max_len": int(vocab.max_len),
             "rule": "lower-cased words and punctuation marks (kdkit.data.text.tokenize); unknown words -> 1, "
                     "padding 0 on the right",
             "use": f"kdkit.data.text.Vocabulary.load(folder / '{EXPORTED_VOCAB}').encode(texts)"},
            lambda folder: vocab.save(folder / EXPORTED_VOCAB))
    raise ModelError(f"{type(model).__name__} does not read raw text; export it with kdkit.deploy.export.export_onnx")


def _replace_folder(tmp: Path, target: Path) -> None:
    """Move the finished folder `tmp` to `target`, replacing an earlier export's folder."""
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()
    os.replace(tmp, target)


def export_raw_text(model: nn.Module, raw: Tensor, path: str | Path, vocab: Any = None, atol: float = 1e-4,
                    metadata: dict[str, str] | None = None) -> ExportReport:
    """Export a raw-text `model` to `path` as a graph of token ids (see the module docstring), check it on `raw`
    (real texts as a raw-text batch) against the model itself, and write its tokenizer to ``<name>.tokenizer/``.
    `metadata` (e.g. :func:`kdkit.run.meta.onnx_metadata` of the run) is stored with the inputs and the tokenizer
    described over it. The tokenizer folder is replaced only once the ONNX file has passed the check."""
    from kdkit.run.meta import input_metadata

    plan = token_ids_export(model, raw, vocab)
    path = Path(path)
    folder = tokenizer_folder(path)
    tokenizer = {**plan.tokenizer, "folder": folder.name}
    described = {**(metadata or {}), **input_metadata(plan.input_specs(), tokenizer)}
    was_training = model.training
    device = next(iter(model.parameters()), raw).device
    with torch.no_grad():
        reference = model.eval()(raw.to(device)).cpu()  # the PyTorch model on the raw text, tokenizing it itself
    model.train(was_training)
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; give a file name such as {path / 'model.onnx'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=path.parent))
    except OSError as err:
        raise ConfigError(f"cannot write {path}: {err.strerror or err}; choose another output path") from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp's folder is private; the tokenizer is shipped like the model file
        plan.save_tokenizer(tmp)
        report = export_checked(plan.module, plan.inputs, path, reference=reference, dynamic=plan.dynamic,
                                max_sizes=plan.max_sizes, atol=atol, metadata=described)
        _replace_folder(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


__all__ = ["TokenIdsExport", "export_raw_text", "token_ids_export", "tokenizer_folder"]
