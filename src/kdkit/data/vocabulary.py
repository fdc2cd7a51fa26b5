"""The word-level vocabulary of text data: tokenisation, word ids, saving and loading.

Texts become fixed-length rows of token ids, LongTensor (N, max_len): id 0 pads, id 1 stands for any word missing
from the vocabulary, longer texts are cut after `max_len` tokens. The vocabulary is counted on the training split
only, so validation and test words the model never saw map to the unknown id, as new text would at serving time.
Save it with ``vocab.save(path)`` to encode new text for a trained model later (``Vocabulary.load(path).encode``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from kdkit.errors import ConfigError, DataError
from kdkit.io.textfile import read_text

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
