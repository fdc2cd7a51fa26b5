"""Text classification data read from files: train/val/test CSV or JSONL splits, encoded with a
:class:`~kdkit.data.vocabulary.Vocabulary` counted on the training split.

A :class:`TextBundle` is the usual :class:`DataBundle` plus the vocabulary; text models need its size, given as
``build_model(name, bundle.input_shape, bundle.num_classes, **bundle.model_kwargs)``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from kdkit.data.builtin import DataBundle
from kdkit.data.vocabulary import Vocabulary, tokenize
from kdkit.errors import ConfigError, DataError
from kdkit.io.textfile import check_csv_rows, read_text
from kdkit.labels import UNLABELLED


@dataclass
class TextBundle(DataBundle):
    """A DataBundle of token-id rows, with the vocabulary that produced them."""

    vocab: Vocabulary | None = None

    @property
    def vocab_size(self) -> int:
        return len(self.vocab) if self.vocab is not None else 0

    @property
    def model_kwargs(self) -> dict[str, Any]:
        """What a text model needs beyond input_shape and num_classes."""
        return {"vocab_size": self.vocab_size}


def _order_labels(labels: Sequence[str]) -> list[str]:
    """Class names in numeric order when every label is an integer ("2" before "10"), else alphabetical."""
    unique = set(labels)
    if all(re.fullmatch(r"-?\d+", s) for s in unique):
        return sorted(unique, key=int)
    return sorted(unique)


def _read_rows(path: Path, text_column: str, label_column: str) -> list[tuple[str, str]]:
    """(text, label) pairs of a .csv or .jsonl file; a bad row stops with its file and line number."""
    if not path.is_file():
        raise DataError(f"text data file not found: {path}; check the path")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson"):
        raise DataError(f"{path}: unknown text file type '{suffix}'; use .csv or .jsonl")
    text = read_text(path)  # UTF-8 (an Excel byte-order mark dropped); else one line naming the line to fix
    if suffix == ".csv":
        check_csv_rows(text, path)  # a ragged row would shift its values into the wrong columns
        reader = csv.DictReader(io.StringIO(text, newline=""))
        columns = reader.fieldnames or []
        for column in (text_column, label_column):
            if column not in columns:
                raise DataError(f"{path} has no column '{column}' (columns: {', '.join(columns) or 'none'}); "
                                "set text_column/label_column")
        records = [(reader.line_num, row) for row in reader]
    else:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise DataError(f"{path}:{number} is not valid JSON; write one object per line") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{number} is not a JSON object; write one object per line")
            records.append((number, row))
    pairs = []
    for number, row in records:
        for column in (text_column, label_column):
            if row.get(column) is None:
                raise DataError(f"{path}:{number} has no '{column}' value; fill it in or set text_column/label_column")
        text, label = str(row[text_column]), str(row[label_column]).strip()
        if not tokenize(text):
            raise DataError(f"{path}:{number} has an empty text; remove the row or fill in its text")
        if not label:  # it would silently become a class of its own
            raise DataError(f"{path}:{number} has an empty label; remove the row or fill in its label")
        pairs.append((text, label))
    if not pairs:
        raise DataError(f"{path} holds no rows; give a file with a header/objects and at least one example")
    return pairs


def _dataset(vocab: Vocabulary, texts: Sequence[str], labels: Sequence[int]) -> TensorDataset:
    return TensorDataset(vocab.encode(texts), torch.as_tensor(np.asarray(labels), dtype=torch.long))


def _label_ids(pairs: Sequence[tuple[str, str]], index: dict[str, int], path: Path) -> list[int]:
    unknown = sorted({label for _, label in pairs if label not in index})
    if unknown:
        raise DataError(f"{path} has label(s) {unknown[:3]} that the training file lacks (known: "
                        f"{', '.join(index)}); fix the labels or add training examples of them")
    return [index[label] for _, label in pairs]


def _split_val(texts: list[str], labels: list[int], val_fraction: float, seed: int):
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    if len(texts) - math.ceil(len(texts) * val_fraction) < 1:  # scikit-learn rounds the held-out count up
        raise DataError(f"{len(texts)} training rows are too few to hold out val_fraction {val_fraction}; "
                        "give a validation file (val=...) or more rows")
    from sklearn.model_selection import train_test_split

    counts = Counter(labels)
    stratify = labels if min(counts.values()) >= 2 and len(labels) * val_fraction >= len(counts) else None
    return train_test_split(texts, labels, test_size=val_fraction, stratify=stratify, random_state=seed)


Split = tuple[list[str], list[int]]


def read_text_splits(
    train: str | Path, test: str | Path, val: str | Path | None, text_column: str, label_column: str,
    val_fraction: float, seed: int,
) -> tuple[Split, Split, Split, list[str]]:
    """(texts, label ids) of the train, validation and test files, and the class names: labels become ids in
    sorted order; without a `val` file, `val_fraction` of the training rows (stratified, drawn by `seed`)."""
    train_pairs = _read_rows(Path(train), text_column, label_column)
    class_names = _order_labels([label for _, label in train_pairs])
    index = {name: i for i, name in enumerate(class_names)}
    texts, labels = [t for t, _ in train_pairs], [index[label] for _, label in train_pairs]
    if val is None:
        texts, val_texts, labels, val_labels = _split_val(texts, labels, val_fraction, seed)
    else:
        val_pairs = _read_rows(Path(val), text_column, label_column)
        val_texts, val_labels = [t for t, _ in val_pairs], _label_ids(val_pairs, index, Path(val))
    test_pairs = _read_rows(Path(test), text_column, label_column)
    test_labels = _label_ids(test_pairs, index, Path(test))
    return (texts, labels), (val_texts, val_labels), ([t for t, _ in test_pairs], test_labels), class_names


def load_text_files(
    train: str | Path, test: str | Path, val: str | Path | None = None, text_column: str = "text",
    label_column: str = "label", max_len: int = 64, min_freq: int = 1, max_vocab: int | None = None,
    val_fraction: float = 0.1, seed: int = 0,
) -> TextBundle:
    """Text classification from .csv (header row) or .jsonl (one object per line) files.

    Labels may be any strings or integers; they become ids 0..C-1 in sorted order (``bundle.class_names``). Without
    a `val` file, `val_fraction` of the training rows (stratified, drawn by `seed`) are held out. The vocabulary is
    built from the remaining training rows only.
    """
    (texts, labels), (val_texts, val_labels), (test_texts, test_labels), class_names = read_text_splits(
        train, test, val, text_column, label_column, val_fraction, seed)
    vocab = Vocabulary.build(texts, max_len, min_freq, max_vocab, class_names)
    return TextBundle(
        train=_dataset(vocab, texts, labels), val=_dataset(vocab, val_texts, val_labels),
        test=_dataset(vocab, test_texts, test_labels), num_classes=len(class_names),
        input_shape=(max_len,), class_names=class_names, vocab=vocab,
    )


def read_texts(path: str | Path, column: str = "text", hint: str = "set text_column") -> list[str]:
    """The texts of a file: a .csv (header row) or .jsonl from `column`, else one text per non-blank line (.txt).
    A missing column or field, or a file without texts, is one DataError line ending in `hint`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"text file not found: {path}; check the path")
    content = read_text(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        check_csv_rows(content, path)
        reader = csv.DictReader(io.StringIO(content, newline=""))
        if column not in (reader.fieldnames or []):
            raise DataError(f"{path} has no column '{column}' (columns: {', '.join(reader.fieldnames or []) or 'none'})"
                            f"; {hint}")
        texts = [row.get(column) for row in reader]
    elif suffix in (".jsonl", ".ndjson"):
        texts = []
        for number, line in enumerate(content.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise DataError(f"{path}:{number} is not valid JSON; write one object per line") from None
            if not isinstance(row, dict) or row.get(column) is None:
                raise DataError(f"{path}:{number} has no '{column}' field; {hint}")
            texts.append(str(row[column]))
    else:
        texts = [line for line in content.splitlines() if line.strip()]
    if any(t is None for t in texts):
        raise DataError(f"{path}: a row has no '{column}' value; fill it in or remove the row")
    if not texts:
        raise DataError(f"{path} holds no texts (one per line, or a '{column}' column / field)")
    return [str(t) for t in texts]


def unlabelled_texts(vocab: Vocabulary, texts: Sequence[str]) -> TensorDataset:
    """A transfer set of raw texts for the teacher to label: token ids with label -1."""
    return _dataset(vocab, texts, [UNLABELLED] * len(texts))
