"""What `kdkit predict` prints: one CSV row per input (its name, the predicted class and its probability, or for
sequence labelling one tag per word), so the output can be read by a person or piped into another tool."""

from __future__ import annotations

import csv
import io
from typing import Any

from torch import Tensor


def prediction_rows(loaded: Any, names: list[str], x: Tensor, raw: list[Any]) -> list[list[str]]:
    """Header and rows; per-token runs show each word of the text with its tag (padding left out)."""
    proba = loaded.predict_proba(x)
    if proba.ndim == 3:  # sequence labelling: (N, L, C)
        from kdkit.data.vocabulary import tokenize

        rows = [["input", "tags"]]
        for name, text, p in zip(names, raw, proba, strict=True):
            words = tokenize(text)[: len(p)] if isinstance(text, str) else []
            rows.append([name, " ".join(f"{w}/{loaded.class_names[int(k)]}" for w, k in zip(words, p.argmax(-1),
                                                                                           strict=False))])
        return rows
    rows = [["input", "class", "probability"]]
    for name, p in zip(names, proba, strict=True):
        k = int(p.argmax())
        rows.append([name, loaded.class_names[k], f"{p[k]:.4f}"])
    return rows


def to_csv(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()
