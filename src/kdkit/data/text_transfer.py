"""Tang et al.'s transfer set for text (Tang et al. 2019, *Distilling Task-Specific Knowledge from BERT into Simple
Neural Networks*, section 3.3): new unlabelled sentences made from the training sentences, for the teacher to label.

Each new sentence starts from a training sentence drawn at random; for every word w_i, with u ~ U[0, 1]:

    u < p_mask                   -> w_i becomes "[MASK]"   (BERT tokenizers read their mask token, word vocabularies
                                                            their unknown id)
    p_mask <= u < p_mask + p_swap -> w_i becomes a word drawn from the words of the training sentences of the same
                                    class as the source, by frequency
    otherwise                    -> w_i is kept

then, with probability p_ngram, only an n-gram of the result is kept (n uniform in 1..max_ngram, start uniform).
Sentences equal to a training sentence or to an earlier new one are drawn again (up to a retry budget).

Where this differs from the paper: Tang et al. swap a word for another word *of the same part of speech*, which
needs a POS tagger and its model files; offline, kdkit swaps for a word of the *same class's* sentences instead
("same-class co-occurrence"), which also keeps the swapped word plausible for the label the source carried. The
paper's values are p_mask = p_swap = 0.1, p_ngram = 0.25, max_ngram = 5, and 20 new sentences per training sentence.
Words are whitespace-separated tokens, so punctuation stays attached as written.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from kdkit.errors import ConfigError, DataError
from kdkit.models.raw_text import MASK_TEXT


def _check(p_mask: float, p_swap: float, p_ngram: float, max_ngram: int) -> None:
    for name, value in (("p_mask", p_mask), ("p_swap", p_swap), ("p_ngram", p_ngram)):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{name} must be in [0, 1], got {value}")
    if p_mask + p_swap > 1.0:
        raise ConfigError(f"p_mask + p_swap must be at most 1, got {p_mask + p_swap}")
    if max_ngram < 1:
        raise ConfigError(f"max_ngram must be at least 1, got {max_ngram}")


def augment_sentence(
    words: Sequence[str], rng: np.random.Generator, swap_words: Sequence[str], swap_cdf: np.ndarray,
    p_mask: float = 0.1, p_swap: float = 0.1, p_ngram: float = 0.25, max_ngram: int = 5,
) -> list[str]:
    """One augmented copy of `words` (see the module docstring); `swap_words` with probabilities `swap_p` are the
    same-class candidates, drawn through their cumulative probabilities `swap_cdf`."""
    draws = rng.random(len(words))
    out = []
    for word, u in zip(words, draws, strict=True):
        if u < p_mask:
            out.append(MASK_TEXT)
        elif u < p_mask + p_swap and len(swap_words):
            pick = int(np.searchsorted(swap_cdf, rng.random() * swap_cdf[-1], side="right"))
            out.append(str(swap_words[min(pick, len(swap_words) - 1)]))
        else:
            out.append(word)
    if len(out) > 1 and rng.random() < p_ngram:
        n = int(rng.integers(1, min(max_ngram, len(out)) + 1))
        start = int(rng.integers(0, len(out) - n + 1))
        out = out[start:start + n]
    return out


def tang_transfer_set(
    texts: Sequence[str], labels: Sequence[int], size: int, seed: int = 0, p_mask: float = 0.1, p_swap: float = 0.1,
    p_ngram: float = 0.25, max_ngram: int = 5, retries: int = 10,
) -> list[str]:
    """`size` new sentences from the labelled training `texts` (their `labels` only choose the swap candidates).

    Deterministic for a given `seed`. Fewer than `size` come back only when the sentences are too few and too short
    to give that many distinct new ones within `retries` draws each."""
    _check(p_mask, p_swap, p_ngram, max_ngram)
    if size < 0:
        raise ConfigError(f"transfer set size must be >= 0, got {size}")
    if len(texts) != len(labels):
        raise DataError(f"{len(texts)} texts but {len(labels)} labels; give one label per text")
    sentences = [text.split() for text in texts]
    keep = [i for i, words in enumerate(sentences) if words and int(labels[i]) >= 0]
    if size and not keep:
        raise DataError("no labelled, non-empty training texts to build a transfer set from")
    candidates: dict[int, tuple[list[str], np.ndarray]] = {}
    for label in {int(labels[i]) for i in keep}:
        counts = Counter(w for i in keep if int(labels[i]) == label for w in sentences[i])
        words = sorted(counts)
        freq = np.asarray([counts[w] for w in words], dtype=np.float64)
        candidates[label] = (words, np.cumsum(freq))
    rng = np.random.default_rng(seed)
    seen = {" ".join(sentences[i]) for i in keep}
    out: list[str] = []
    for _ in range(size):
        for _attempt in range(retries):
            source = keep[int(rng.integers(len(keep)))]
            words, probs = candidates[int(labels[source])]
            text = " ".join(augment_sentence(sentences[source], rng, words, probs, p_mask, p_swap, p_ngram,
                                             max_ngram))
            if text not in seen:
                seen.add(text)
                out.append(text)
                break
    return out


__all__ = ["augment_sentence", "tang_transfer_set"]
