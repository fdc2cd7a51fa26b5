"""The built-in ``synthetic_reviews`` source: generated 4-class review sentiment in which word order decides the
label (negation, intensifiers, contrasting clauses). Nothing is downloaded; see :func:`synthetic_reviews`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from kdkit.data.source import GeneratedSource
from kdkit.data.text_files import TextBundle, _dataset, _split_val, unlabelled_texts
from kdkit.data.vocabulary import Vocabulary
from kdkit.errors import ConfigError

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


class SyntheticReviewsSource(GeneratedSource):
    """synthetic_reviews: generated 4-class review sentiment where word order decides the label."""

    name: Literal["synthetic_reviews"] = "synthetic_reviews"
    generator = staticmethod(synthetic_reviews)
