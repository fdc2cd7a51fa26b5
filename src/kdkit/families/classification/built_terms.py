"""The loss terms a config's ``distill.losses`` built while it was parsed, kept for the run that follows.

Parsing builds every term (so a bad T or alpha is one line before any data loads); keeping them lets the pipeline
train with those same objects instead of building each loss a second time. They are handed over once: a term can
carry a trainable adapter, so two runs of one config object must never share them; a second caller, or a config
whose losses changed since (``model_copy(update=...)``), gets freshly built ones.

The holder is a cache, not part of the config's value: it compares equal to anything, so two configs parsed from
the same YAML stay equal (pydantic compares private attributes too) whether or not their terms were taken.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any


class BuiltTerms:
    """The terms built from one `losses` list, handed out at most once."""

    def __init__(self, losses: Sequence[dict[str, Any]], terms: list[Any] | None) -> None:
        self._losses = copy.deepcopy(list(losses))  # the spec they were built from, to notice a later change
        self._terms: list[Any] | None = terms

    def take(self, losses: Sequence[dict[str, Any]]) -> list[Any] | None:
        """The kept terms if they are still unused and were built from `losses`; else None (build new ones)."""
        if self._terms is None or list(losses) != self._losses:
            return None
        terms, self._terms = self._terms, None
        return terms

    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = None  # type: ignore[assignment]

    def __deepcopy__(self, memo: dict[int, Any]) -> BuiltTerms:
        # a copied config builds its own terms: the copy must not hand out objects the original may also hand out
        return BuiltTerms(self._losses, None)


def terms_of(losses: Sequence[dict[str, Any]], kept: BuiltTerms | None) -> list[Any]:
    """The LossTerms of `losses`: the ones kept at parse time when still unused, else newly built ones."""
    terms = kept.take(losses) if kept is not None else None
    if terms is not None:
        return terms
    from kdkit.terms import build_terms  # torch: loaded when terms are built, not when config is imported

    return build_terms(losses)
