"""Raw text in a tensor: each model tokenizes the same batch its own way.

A batch of raw text is a ``uint8`` tensor (N, max_bytes): row i holds the UTF-8 bytes of text i, padded with 0
(a text longer than `max_bytes` is cut at a character boundary). The trainer, the teacher cache, the metrics and
the timing code move and index it like any other input, so a batch carries the text once, and each model decodes
it and encodes it with its own tokenizer inside its forward:

* ``hf:<folder>`` models with ``raw_text`` use the tokenizer saved in their folder (see :mod:`kdkit.models.hf_text`);
* word-vocabulary models (``text_cnn``, ``text_bilstm``, ...) are wrapped in :class:`WordTokenized`, which encodes
  the decoded texts with kdkit's :class:`~kdkit.data.text.Vocabulary` (passed in as its ``encode`` function, so the
  models package does not depend on the data package).

This is what lets a MiniLM teacher (WordPiece ids) teach a BiLSTM student (word ids) in the same step: both read the
same text, neither reads the other's ids. Timing a model on raw text includes its tokenization, as serving would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from kdkit.errors import DataError, ModelError

MASK_TEXT = "[MASK]"  # a masked word in a transfer set (kdkit.data.text_transfer): BERT tokenizers read their mask
_WORD_MASK = " \u2047 "  # token, word vocabularies read a symbol they never saw, i.e. their unknown id


def encode_texts(texts: Sequence[str], max_bytes: int = 512) -> Tensor:
    """uint8 tensor (len(texts), max_bytes): the UTF-8 bytes of each text, cut at a character boundary, 0-padded.

    NUL characters (byte 0, the padding) are dropped from the texts."""
    if max_bytes < 1:
        raise DataError(f"max_bytes must be at least 1, got {max_bytes}")
    out = torch.zeros((len(texts), max_bytes), dtype=torch.uint8)
    for row, text in enumerate(texts):
        raw = text.replace("\x00", "").encode("utf-8")[:max_bytes]
        raw = raw.decode("utf-8", errors="ignore").encode("utf-8")  # drop a character cut in half
        if raw:
            out[row, : len(raw)] = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    return out


def is_raw_text(x: Tensor) -> bool:
    """True for a batch of raw text (uint8, (N, max_bytes))."""
    return x.dtype == torch.uint8 and x.dim() == 2


def decode_texts(x: Tensor) -> list[str]:
    """The texts of a raw-text batch (see :func:`encode_texts`)."""
    if not is_raw_text(x):
        raise ModelError(f"expected raw text as a uint8 tensor (batch, max_bytes), got {x.dtype} with shape "
                         f"{tuple(x.shape)}; encode texts with kdkit.models.raw_text.encode_texts")
    rows = x.detach().cpu().numpy()
    return [bytes(row).rstrip(b"\x00").decode("utf-8", errors="ignore") for row in rows]


class WordTokenized(nn.Module):
    """A word-id model that reads raw text: forward(bytes) = model(encode(decode(bytes))).

    `encode` turns a list of texts into word ids (N, max_len), e.g. ``vocab.encode`` of a kdkit Vocabulary; masked
    words (``[MASK]``) become the vocabulary's unknown id. Integer ids given directly are passed through as they are.
    The wrapped model is ``self.model`` (module paths for feature terms start with ``model.``).
    """

    def __init__(self, model: nn.Module, encode: Callable[[Sequence[str]], Tensor]) -> None:
        super().__init__()
        self.model, self.encode = model, encode

    def token_ids(self, texts: Sequence[str]) -> Tensor:
        """The word ids the wrapped model reads for `texts` (what the ONNX export takes as its input)."""
        return self.encode([text.replace(MASK_TEXT, _WORD_MASK) for text in texts])

    def forward(self, x: Tensor) -> Tensor:
        if not is_raw_text(x):
            return self.model(x)
        return self.model(self.token_ids(decode_texts(x)).to(x.device))


__all__ = ["MASK_TEXT", "WordTokenized", "decode_texts", "encode_texts", "is_raw_text"]
