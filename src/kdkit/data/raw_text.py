"""Text data that keep the raw text, so each model tokenizes it its own way (``data.raw_text: true``).

Rows are the UTF-8 bytes of each text (uint8 (N, max_bytes), see :mod:`kdkit.models.raw_text`): a batch carries the
text once; an ``hf:<folder>`` teacher encodes it with its WordPiece tokenizer, a word-vocabulary student (``text_cnn``,
``text_bilstm``, ...) with kdkit's :class:`~kdkit.data.text.Vocabulary`, built on the training split as for word-id
data. :class:`RawTextBundle` wraps the word models for this when they are built from a config
(``build_from_config``), so a MiniLM teacher can teach a BiLSTM in one step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from kdkit.data.text_files import TextBundle, read_text_splits
from kdkit.data.text_transfer import tang_transfer_set
from kdkit.data.vocabulary import Vocabulary
from kdkit.labels import UNLABELLED
from kdkit.models.raw_text import WordTokenized, encode_texts

DEFAULT_MAX_BYTES = 512


@dataclass
class RawTextBundle(TextBundle):
    """A TextBundle whose inputs are raw text; ``vocab`` encodes it for word-id models, ``texts`` keeps the splits'
    strings (``{"train": [...], "val": [...], "test": [...]}``)."""

    max_bytes: int = DEFAULT_MAX_BYTES
    texts: dict[str, list[str]] | None = None

    @property
    def raw_text(self) -> bool:
        return True

    @property
    def model_kwargs(self) -> dict[str, Any]:
        """Word models take the vocabulary's size; ``hf:`` models take raw_text (their own tokenizer)."""
        return {"vocab_size": self.vocab_size, "raw_text": True}

    def wrap_model(self, name: str, model: nn.Module) -> nn.Module:
        """A word-id model (one with ``vocab_size``) wrapped to read raw text with this bundle's vocabulary."""
        return reading_raw_text(name, model, self.vocab)


def reading_raw_text(name: str, model: nn.Module, vocab: Vocabulary | None) -> nn.Module:
    """`model` as it reads raw text: a word-id model (one with ``vocab_size``) wrapped in WordTokenized with `vocab`;
    an ``hf:`` model (its own tokenizer) as it is. Training and `kdkit.load` build the same module this way."""
    if name.startswith("hf:") or not hasattr(model, "vocab_size") or vocab is None:
        return model
    return WordTokenized(model, vocab.encode)


def raw_dataset(texts: Sequence[str], labels: Sequence[int], max_bytes: int = DEFAULT_MAX_BYTES) -> TensorDataset:
    """(raw text bytes, label) pairs."""
    return TensorDataset(encode_texts(texts, max_bytes), torch.as_tensor(np.asarray(labels), dtype=torch.long))


def raw_unlabelled(texts: Sequence[str], max_bytes: int = DEFAULT_MAX_BYTES) -> TensorDataset:
    """A transfer set of raw texts for the teacher to label (label -1)."""
    return raw_dataset(texts, [UNLABELLED] * len(texts), max_bytes)


def raw_text_bundle(
    train: tuple[list[str], list[int]], val: tuple[list[str], list[int]], test: tuple[list[str], list[int]],
    class_names: Sequence[str], max_len: int = 64, min_freq: int = 1, max_vocab: int | None = None,
    transfer: Sequence[str] = (), max_bytes: int = DEFAULT_MAX_BYTES,
) -> RawTextBundle:
    """A RawTextBundle from (texts, labels) splits; the word vocabulary is counted on the training texts only."""
    vocab = Vocabulary.build(train[0], max_len, min_freq, max_vocab, list(class_names))
    return RawTextBundle(
        train=raw_dataset(*train, max_bytes), val=raw_dataset(*val, max_bytes), test=raw_dataset(*test, max_bytes),
        num_classes=len(class_names), input_shape=(max_len,), class_names=list(class_names), vocab=vocab,
        transfer=raw_unlabelled(transfer, max_bytes) if len(transfer) else None, max_bytes=max_bytes,
        texts={"train": list(train[0]), "val": list(val[0]), "test": list(test[0])},
    )


def load_text_files_raw(
    train: str | Path, test: str | Path, val: str | Path | None = None, text_column: str = "text",
    label_column: str = "label", max_len: int = 64, min_freq: int = 1, max_vocab: int | None = None,
    val_fraction: float = 0.1, seed: int = 0, max_bytes: int = DEFAULT_MAX_BYTES, transfer_size: int = 0,
) -> RawTextBundle:
    """:func:`kdkit.data.text.load_text_files` (same files, labels and validation split) keeping the raw text;
    `transfer_size` > 0 adds that many sentences of Tang et al.'s transfer set made from the training split
    (:mod:`kdkit.data.text_transfer`, drawn by `seed`), unlabelled."""
    (texts, labels), val_split, test_split, class_names = read_text_splits(
        train, test, val, text_column, label_column, val_fraction, seed)
    transfer = tang_transfer_set(texts, labels, transfer_size, seed=seed) if transfer_size else []
    return raw_text_bundle((texts, labels), val_split, test_split, class_names, max_len, min_freq, max_vocab, transfer,
                           max_bytes)


__all__ = ["DEFAULT_MAX_BYTES", "RawTextBundle", "load_text_files_raw", "raw_dataset", "raw_text_bundle",
           "raw_unlabelled", "reading_raw_text"]
