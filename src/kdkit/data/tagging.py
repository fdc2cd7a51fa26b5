"""Sequence labelling: one class per token (e.g. part-of-speech or entity tags), labels (N, max_len) with -1 at the
padded positions, which every loss and metric leaves out.

The built-in ``synthetic_tagging`` is generated offline from the review vocabulary of :mod:`kdkit.data.text`: each
adjective is tagged with the sentiment it carries in its clause ("positive" / "negative"), every other token
"other". A negator flips the tag ("the plot was not very good": "good" is negative), so a token's tag depends on
up to two tokens before it: a model that sees each word alone cannot tag it, a teacher that reads the whole
sentence can, and a student with a narrow window sits between them.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field, PositiveInt
from torch.utils.data import TensorDataset

from kdkit.data.reviews import _INTENSIFIERS, _MILD, _NEGATORS, _NOUNS, _STRONG, _VERBS
from kdkit.data.source import GeneratedSource
from kdkit.data.text_files import TextBundle
from kdkit.data.vocabulary import Vocabulary
from kdkit.errors import ConfigError
from kdkit.labels import UNLABELLED

TAG_CLASSES = ["other", "positive", "negative"]
_TAG_OF_POLARITY = {1: 1, -1: 2}


def tagged_sentence(rng: np.random.Generator) -> tuple[list[str], list[int]]:
    """One to three clauses joined by "and" / "but" / ","; the tokens and their tags."""
    tokens: list[str] = []
    tags: list[int] = []
    for i in range(int(rng.integers(1, 4))):
        if i:
            tokens.append(str(rng.choice(["and", "but", ","])))
            tags.append(0)
        negated, polarity = bool(rng.random() < 0.4), int(rng.choice([-1, 1]))
        adjectives = _STRONG[polarity] if rng.random() < 0.35 else _MILD[polarity]
        words = ["the", str(rng.choice(_NOUNS)), str(rng.choice(_VERBS))]
        words += [str(rng.choice(_NEGATORS))] if negated else []
        words += [str(rng.choice(_INTENSIFIERS))] if rng.random() < 0.3 else []
        tokens += [*words, str(rng.choice(adjectives))]
        tags += [0] * len(words) + [_TAG_OF_POLARITY[-polarity if negated else polarity]]
    return [*tokens, "."], [*tags, 0]


def _rows(vocab: Vocabulary, sentences: list[list[str]], tags: list[list[int]]) -> TensorDataset:
    x = vocab.encode([" ".join(s) for s in sentences])
    y = torch.full(x.shape, UNLABELLED, dtype=torch.long)  # padding is -1: out of every loss and metric
    for row, row_tags in enumerate(tags):
        kept = row_tags[: vocab.max_len]
        y[row, : len(kept)] = torch.as_tensor(kept)
    return TensorDataset(x, y)


def synthetic_tagging(
    seed: int = 0, val_fraction: float = 0.1, transfer_size: int = 0, n_train: int = 4000, n_test: int = 1000,
    max_len: int = 32, generator_seed: int = 0,
) -> TextBundle:
    """Generated sentences with one tag per token (other / positive / negative; see the module docstring).

    As for ``synthetic_reviews``, the sentences depend on `generator_seed` only and `seed` draws the validation
    split. `transfer_size` must be 0 (see the error it raises otherwise)."""
    if transfer_size:
        raise ConfigError("synthetic_tagging has no unlabelled transfer set: its padding is labelled -1 already, so "
                          "token_kd could not tell unlabelled tokens from padding; set data.transfer_size: 0")
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    rng = np.random.default_rng(generator_seed)
    pairs = [tagged_sentence(rng) for _ in range(n_train + n_test)]
    sentences, tags = [p[0] for p in pairs], [p[1] for p in pairs]
    order = np.random.default_rng(seed).permutation(n_train)
    n_val = max(1, round(n_train * val_fraction))
    val_idx, train_idx = order[:n_val], order[n_val:]
    vocab = Vocabulary.build([" ".join(sentences[i]) for i in train_idx], max_len, class_names=TAG_CLASSES)

    def subset(index) -> TensorDataset:
        return _rows(vocab, [sentences[i] for i in index], [tags[i] for i in index])

    return TextBundle(
        train=subset(train_idx), val=subset(val_idx), test=subset(range(n_train, n_train + n_test)),
        num_classes=len(TAG_CLASSES), input_shape=(max_len,), class_names=list(TAG_CLASSES),
        vocab=vocab,
    )


class SyntheticTaggingSource(GeneratedSource):
    """synthetic_tagging: generated sentences with one tag per token."""

    name: Literal["synthetic_tagging"] = "synthetic_tagging"
    generator = staticmethod(synthetic_tagging)
    n_train: PositiveInt = Field(4000, description="generated training sentences (validation included)")
    n_test: PositiveInt = Field(1000, description="generated test sentences")

    def load(self, seed: int) -> TextBundle:
        return synthetic_tagging(seed=seed, val_fraction=self.val_fraction, transfer_size=self.transfer_size,
                                 n_train=self.n_train, n_test=self.n_test)
