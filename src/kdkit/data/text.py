"""Text classification data: a word-level vocabulary, CSV/JSONL loading, and a generated review set.

Texts become fixed-length rows of token ids, LongTensor (N, max_len): id 0 pads, id 1 stands for any word missing
from the vocabulary, longer texts are cut after `max_len` tokens. The vocabulary is counted on the training split
only, so validation and test words the model never saw map to the unknown id, as new text would at serving time.

A :class:`TextBundle` is the usual :class:`DataBundle` plus the :class:`Vocabulary`; text models need its size,
given as ``build_model(name, bundle.input_shape, bundle.num_classes, **bundle.model_kwargs)``. Save the vocabulary
with ``bundle.vocab.save(path)`` to encode new text for a trained model later (``Vocabulary.load(path).encode``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import TensorDataset

from kdkit.data.builtin import DataBundle
from kdkit.errors import ConfigError, DataError
from kdkit.labels import UNLABELLED
from kdkit.textfile import check_csv_rows, read_text

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
VOCAB_FORMAT = "kdkit-vocabulary/1"
_TOKEN = re.compile(r"\w+(?:'\w+)?|[^\w\s]")  # words (with an inner apostrophe: "isn't") and single punctuation


def tokenize(text: str) -> list[str]:
    """Lower-cased words and punctuation marks: ``"Not bad, really!"`` -> ``["not", "bad", ",", "really", "!"]``."""
    return _TOKEN.findall(text.lower())


@dataclass
class Vocabulary:
    """Token list (position = id; 0 and 1 are the pad and unknown tokens), the fixed row length, and the class
    names of the labels: everything needed to turn new text into model inputs and predictions back into names."""

    tokens: list[str]
    max_len: int
    class_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.tokens[:2] != [PAD, UNK]:
            raise DataError(f"a vocabulary must start with '{PAD}', '{UNK}' (ids 0 and 1); rebuild it")
        if self.max_len < 1:
            raise ConfigError(f"max_len must be at least 1, got {self.max_len}")
        self.index = {token: i for i, token in enumerate(self.tokens)}

    @classmethod
    def build(
        cls, texts: Sequence[str], max_len: int, min_freq: int = 1, max_vocab: int | None = None,
        class_names: Sequence[str] = (),
    ) -> Vocabulary:
        """Words seen at least `min_freq` times in `texts`, most frequent first (ties alphabetical, so the ids
        never depend on row order), at most `max_vocab` entries counting the pad and unknown tokens."""
        if min_freq < 1:
            raise ConfigError(f"min_freq must be at least 1, got {min_freq}")
        if max_vocab is not None and max_vocab < 3:
            raise ConfigError(f"max_vocab must be at least 3 (pad, unknown and one word), got {max_vocab}")
        counts = Counter(token for text in texts for token in tokenize(text))
        words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        if max_vocab is not None:
            words = words[: max_vocab - 2]
        return cls([PAD, UNK, *words], max_len, list(class_names))

    def __len__(self) -> int:
        return len(self.tokens)

    def ids(self, text: str) -> list[int]:
        """Token ids of one text, cut to max_len but not padded."""
        return [self.index.get(token, UNK_ID) for token in tokenize(text)[: self.max_len]]

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """LongTensor (len(texts), max_len) of token ids, padded with 0 on the right."""
        out = torch.full((len(texts), self.max_len), PAD_ID, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = self.ids(text)
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """The tokens of one row joined by spaces, padding left out (for looking at data)."""
        return " ".join(self.tokens[int(i)] for i in ids if int(i) != PAD_ID)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": VOCAB_FORMAT, "max_len": self.max_len, "class_names": self.class_names,
                   "tokens": self.tokens}
        path.write_text(json.dumps(payload, ensure_ascii=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"vocabulary file not found: {path}; save one with bundle.vocab.save(path)")
        try:
            payload = json.loads(read_text(path))
        except json.JSONDecodeError:
            raise DataError(f"{path} is not valid JSON; give a file written by Vocabulary.save") from None
        if not isinstance(payload, dict) or payload.get("format") != VOCAB_FORMAT:
            raise DataError(f"{path} is not a kdkit vocabulary (format {VOCAB_FORMAT}); write it with Vocabulary.save")
        if not isinstance(payload.get("tokens"), list) or not isinstance(payload.get("max_len"), int):
            raise DataError(f"{path} lacks its token list or max_len; write it again with Vocabulary.save")
        return cls(list(payload["tokens"]), payload["max_len"], list(payload.get("class_names", [])))


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


def unlabelled_texts(vocab: Vocabulary, texts: Sequence[str]) -> TensorDataset:
    """A transfer set of raw texts for the teacher to label: token ids with label -1."""
    return _dataset(vocab, texts, [UNLABELLED] * len(texts))


# --------------------------------------------------------------------------- generated reviews (built in)

REVIEW_CLASSES = ["very negative", "negative", "positive", "very positive"]
_MILD = {1: ["good", "nice", "fine", "pleasant", "enjoyable", "solid", "decent", "charming"],
         -1: ["bad", "poor", "dull", "weak", "bland", "disappointing", "mediocre", "messy"]}
_STRONG = {1: ["excellent", "wonderful", "superb", "brilliant", "fantastic", "outstanding"],
           -1: ["awful", "terrible", "horrible", "dreadful", "atrocious", "unbearable"]}
_INTENSIFIERS = ["very", "really", "extremely", "truly", "incredibly"]
_NEGATORS = ["not", "never", "hardly"]
_NOUNS = ["food", "service", "movie", "plot", "acting", "staff", "room", "price", "music", "ending", "story",
          "hotel", "screen", "battery", "design"]
_VERBS = ["was", "is", "seemed", "felt", "looked"]
_OPENERS = ["", "honestly ,", "overall ,", "well ,", "i think"]


Clause = tuple[str, int, bool]  # text, polarity (+1/-1), strong


def _clause(rng: np.random.Generator, polarity: int | None = None) -> Clause:
    """One clause and its (polarity +1/-1, strong?) after negation: "the plot was not very good" -> (-1, mild).

    A negator flips the polarity and softens it ("not awful" is mildly positive); an intensifier or a strong
    adjective makes an un-negated clause strong. `polarity` asks for a given meaning of the whole clause.
    """
    negated = bool(rng.random() < 0.35)
    meaning = int(rng.choice([-1, 1])) if polarity is None else polarity
    word_polarity = -meaning if negated else meaning
    strong_word, intensified = bool(rng.random() < 0.35), bool(rng.random() < 0.3)
    adjective = str(rng.choice(_STRONG[word_polarity] if strong_word else _MILD[word_polarity]))
    words = ["the", str(rng.choice(_NOUNS)), str(rng.choice(_VERBS))]
    words += [str(rng.choice(_NEGATORS))] if negated else []
    words += [str(rng.choice(_INTENSIFIERS))] if intensified else []
    return " ".join([*words, adjective]), meaning, (strong_word or intensified) and not negated


def compose(first: Clause, second: Clause | None, form: str, opener: str = "") -> tuple[str, int]:
    """A review from one or two clauses and its class (index into REVIEW_CLASSES). Forms: "single" (`first`
    decides), "but" ("A but B": B decides), "although_first" ("although A , B": B decides) and "although_second"
    ("A , although B": A decides). The same two clauses in the other order may thus mean the opposite."""
    if form == "single" or second is None:
        text, deciding = first[0], first
    elif form == "but":
        text, deciding = f"{first[0]} but {second[0]}", second
    elif form == "although_first":
        text, deciding = f"although {first[0]} , {second[0]}", second
    elif form == "although_second":
        text, deciding = f"{first[0]} , although {second[0]}", first
    else:
        raise ConfigError(f"unknown review form {form!r}; use single, but, although_first or although_second")
    _, meaning, strong = deciding
    label = (2 + int(strong)) if meaning > 0 else (1 - int(strong))
    return f"{opener} {text} .".strip(), label


def review(rng: np.random.Generator) -> tuple[str, int]:
    """One generated review and its class: 40% a single clause, 35% "A but B", 12.5% each "although" form.

    The two clauses of a contrast mostly (80%) disagree, so a bag-of-words model cannot tell which one decides,
    while an order-aware model can.
    """
    draw = rng.random()
    form = "single" if draw < 0.4 else "but" if draw < 0.75 else "although_first" if draw < 0.875 else \
        "although_second"
    first = _clause(rng)
    second = None if form == "single" else _clause(rng, -first[1] if rng.random() < 0.8 else first[1])
    return compose(first, second, form, opener=str(rng.choice(_OPENERS)))


def generate_reviews(n: int, generator_seed: int) -> tuple[list[str], list[int]]:
    rng = np.random.default_rng(generator_seed)
    pairs = [review(rng) for _ in range(n)]
    return [t for t, _ in pairs], [y for _, y in pairs]


def synthetic_reviews(
    seed: int = 0, val_fraction: float = 0.1, transfer_size: int = 0, n_train: int = 4000, n_test: int = 2000,
    max_len: int = 24, generator_seed: int = 0,
) -> TextBundle:
    """Generated 4-class review sentiment (very negative .. very positive) where word order decides the label.

    The texts depend on `generator_seed` only (fixed by default, so results compare across runs); `seed` draws
    the validation split. The transfer set is `transfer_size` more reviews from another generator seed, unlabelled.
    Nothing is downloaded.
    """
    texts, labels = generate_reviews(n_train + n_test, generator_seed)
    train_texts, train_labels = texts[:n_train], labels[:n_train]
    train_texts, val_texts, train_labels, val_labels = _split_val(train_texts, train_labels, val_fraction, seed)
    vocab = Vocabulary.build(train_texts, max_len, class_names=REVIEW_CLASSES)
    transfer = None
    if transfer_size > 0:
        transfer = unlabelled_texts(vocab, generate_reviews(int(transfer_size), generator_seed + 10_000)[0])
    return TextBundle(
        train=_dataset(vocab, train_texts, train_labels), val=_dataset(vocab, val_texts, val_labels),
        test=_dataset(vocab, texts[n_train:], labels[n_train:]), num_classes=len(REVIEW_CLASSES),
        input_shape=(max_len,), transfer=transfer, class_names=list(REVIEW_CLASSES), vocab=vocab,
    )


__all__ = ["PAD", "UNK", "PAD_ID", "UNK_ID", "TextBundle", "Vocabulary", "load_text_files", "tokenize",
           "unlabelled_texts", "REVIEW_CLASSES", "compose", "generate_reviews",
           "synthetic_reviews"]
