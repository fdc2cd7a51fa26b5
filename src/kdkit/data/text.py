"""Text classification data, in three files: :mod:`kdkit.data.vocabulary` (tokenisation and the word-level
vocabulary), :mod:`kdkit.data.text_files` (train/val/test splits read from CSV or JSONL, the TextBundle) and
:mod:`kdkit.data.reviews` (the generated ``synthetic_reviews`` source).

This module keeps the names importable where they were (``kdkit.data.text.Vocabulary.load`` is written into run
metadata and exported tokenizer folders), so older run directories and scripts keep working; new code imports from
the three modules.
"""

from __future__ import annotations

from kdkit.data.reviews import REVIEW_CLASSES, compose, generate_reviews, review, synthetic_reviews
from kdkit.data.text_files import TextBundle, load_text_files, read_text_splits, unlabelled_texts
from kdkit.data.vocabulary import PAD, PAD_ID, UNK, UNK_ID, VOCAB_FORMAT, Vocabulary, tokenize

__all__ = ["PAD", "UNK", "PAD_ID", "UNK_ID", "VOCAB_FORMAT", "TextBundle", "Vocabulary", "load_text_files",
           "read_text_splits", "tokenize", "unlabelled_texts", "REVIEW_CLASSES", "compose", "generate_reviews",
           "review", "synthetic_reviews"]
