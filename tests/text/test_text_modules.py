"""The text data modules by concept: vocabulary, files, generator; kdkit.data.text gives the same objects under its
own names (run metadata names kdkit.data.text.Vocabulary)."""

from __future__ import annotations

import ast
from pathlib import Path

import kdkit.data.reviews as reviews
import kdkit.data.text as text
import kdkit.data.text_files as text_files
import kdkit.data.vocabulary as vocabulary
from kdkit.data import GENERATED, sources


def _imports(module: object) -> set[str]:
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))  # type: ignore[attr-defined]
    return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}


def test_kdkit_data_text_gives_the_same_objects_as_the_parts() -> None:
    assert text.Vocabulary is vocabulary.Vocabulary and text.tokenize is vocabulary.tokenize
    assert text.TextBundle is text_files.TextBundle and text.load_text_files is text_files.load_text_files
    assert text.synthetic_reviews is reviews.synthetic_reviews and text.compose is reviews.compose
    assert set(text.__all__) <= set(dir(text))
    assert "synthetic_reviews" in GENERATED and sources()["synthetic_reviews"].__module__ == "kdkit.data.reviews"


def test_each_part_depends_only_on_the_parts_below_it() -> None:
    # the vocabulary needs neither files nor the generator (nor scikit-learn); files do not need the generator
    assert not {"kdkit.data.text_files", "kdkit.data.reviews", "kdkit.data.text", "sklearn.model_selection"} \
        & _imports(vocabulary)
    assert not {"kdkit.data.reviews", "kdkit.data.text"} & _imports(text_files)
    assert "kdkit.data.text" not in _imports(reviews)
