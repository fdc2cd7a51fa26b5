"""Text classifiers over token-id rows (N, L) padded with id 0 (see :mod:`kdkit.data.text`).

* ``text_transformer``: the teacher. Token + learned position embeddings, a pre-norm ``nn.TransformerEncoder``
  (Vaswani et al. 2017) with a padding mask, then masked mean pooling (or a CLS token) and a linear head.
* ``text_bow``: bag of words. Mean of the word embeddings (padding left out), optional hidden layer, linear head;
  blind to word order, the fastest student.
* ``text_cnn``: 1-D convolutions over the embeddings with max-pooling over time (Kim 2014); sees n-grams.

``pooling: none`` (transformer, CNN) gives one prediction per token, logits (N, L, C), for sequence labelling.
* ``text_gru``: a small GRU (Cho et al. 2014) reading the tokens in order; its last state feeds the head.

Every builder takes ``vocab_size`` (the vocabulary's length, ``bundle.vocab_size``); ``input_shape`` is
``(max_len,)``. Padding never changes a prediction: appending pad tokens leaves the logits as they were.

``hf:<local dir>`` wraps a Hugging Face ``AutoModelForSequenceClassification`` saved in a local folder (optional
extra ``kdkit[text]``), so it can be a teacher or a student like the built-in models.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from kdkit.errors import ConfigError, ModelError

PAD_ID = 0  # the same as kdkit.data.text.PAD_ID; not imported so the models do not depend on the data package


def check_ids(x: Tensor, vocab_size: int, max_len: int | None = None) -> None:
    """Token ids must be integers in [0, vocab_size) and rows at most max_len long; else one clear ModelError."""
    if x.is_floating_point() or x.dim() != 2:
        raise ModelError(f"text models take token ids as an integer tensor (batch, length), got {x.dtype} with "
                         f"shape {tuple(x.shape)}; encode texts with Vocabulary.encode")
    if max_len is not None and x.shape[1] > max_len:
        raise ModelError(f"rows have {x.shape[1]} tokens but the model was built for max_len {max_len}; "
                         "build it with input_shape=(length,) or cut the rows")
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return  # the value check below reads tensors into Python, which an exported graph cannot hold
    low, high = (int(x.min()), int(x.max())) if x.numel() else (0, 0)
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise ModelError(f"token id {bad} is outside the model's vocabulary of {vocab_size}; build the model "
                         "with vocab_size=len(vocab) of the vocabulary that encoded the data")


def _need_vocab(name: str, vocab_size: int | None) -> int:
    if vocab_size is None or int(vocab_size) < 3:
        raise ConfigError(f"model '{name}' needs vocab_size (the vocabulary's length, e.g. bundle.vocab_size); "
                          f"set params.vocab_size, got {vocab_size}")
    return int(vocab_size)


def _max_len(input_shape: Sequence[int], name: str) -> int:
    if len(input_shape) != 1:
        raise ConfigError(f"model '{name}' takes rows of token ids, input_shape (max_len,); got {tuple(input_shape)}")
    return int(input_shape[0])


def _keep_one_slot(keep: Tensor) -> Tensor:
    """`keep` (N, L) with the first slot also kept in rows that keep nothing (out of place: ONNX-exportable)."""
    first = torch.zeros_like(keep)
    first[:, 0] = True
    return keep | (first & ~keep.any(1, keepdim=True))


def masked_mean(h: Tensor, keep: Tensor) -> Tensor:
    """Mean of h (N, L, D) over the positions where keep (N, L) is True; an empty row gives zeros."""
    weights = keep.unsqueeze(-1).to(h.dtype)
    return (h * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class TextTransformer(nn.Module):
    """Transformer encoder classifier: logits = head(pool(encoder(embed(x) + pos)))."""

    def __init__(
        self, vocab_size: int, max_len: int, num_classes: int, dim: int = 64, heads: int = 4, layers: int = 2,
        ff_mult: int = 2, dropout: float = 0.1, pooling: str = "mean",
    ) -> None:
        super().__init__()
        if pooling not in ("mean", "cls", "none"):
            raise ConfigError(f"text_transformer pooling must be 'mean', 'cls' or 'none' (one prediction per token), "
                              f"got {pooling!r}")
        if dim % heads:
            raise ConfigError(f"text_transformer dim ({dim}) must be divisible by heads ({heads})")
        self.vocab_size, self.max_len, self.pooling = vocab_size, max_len, pooling
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=PAD_ID)
        self.position = nn.Embedding(max_len + (pooling == "cls"), dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim)) if pooling == "cls" else None
        layer = nn.TransformerEncoderLayer(dim, heads, ff_mult * dim, dropout, batch_first=True, norm_first=True)
        # no nested tensors: they would return zeros at padded positions, which changes nothing after pooling but
        # makes tapped features differ between train and eval mode
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        check_ids(x, self.vocab_size, self.max_len)
        keep = _keep_one_slot(x != PAD_ID)  # an all-padding row attends to its first slot, not to nothing (NaN)
        h = self.embed(x)
        if self.cls is not None:
            h = torch.cat([self.cls.expand(len(x), -1, -1), h], dim=1)
            keep = torch.cat([keep.new_ones(len(x), 1), keep], dim=1)
        h = h + self.position.weight[: h.shape[1]]
        h = self.encoder(h, src_key_padding_mask=~keep)
        if self.pooling == "none":  # sequence labelling: logits (N, L, C), one row per token
            return self.head(h)
        pooled = h[:, 0] if self.cls is not None else masked_mean(h, keep)
        return self.head(pooled)


class BagOfWords(nn.Module):
    """logits = head(mean of the embeddings of the non-pad tokens): fast, and blind to word order."""

    def __init__(self, vocab_size: int, num_classes: int, dim: int = 32, hidden: int = 0) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embed = nn.EmbeddingBag(vocab_size, dim, mode="mean", padding_idx=PAD_ID)
        self.features = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU()) if hidden else nn.Identity()
        self.head = nn.Linear(hidden or dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        check_ids(x, self.vocab_size)
        return self.head(self.features(self.embed(x)))


class TextCNN(nn.Module):
    """Embeddings -> Conv1d per kernel size -> ReLU -> max over the non-pad positions -> concatenated -> head."""

    def __init__(
        self, vocab_size: int, num_classes: int, dim: int = 32, width: int = 32, kernels: Sequence[int] = (3,),
        pooling: str = "max",
    ) -> None:
        super().__init__()
        if any(k % 2 == 0 for k in kernels):
            raise ConfigError(f"text_cnn kernels must be odd (centred windows), got {list(kernels)}")
        if pooling not in ("max", "none"):
            raise ConfigError(f"text_cnn pooling must be 'max' or 'none' (one prediction per token), got {pooling!r}")
        self.vocab_size, self.pooling = vocab_size, pooling
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=PAD_ID)
        self.convs = nn.ModuleList(nn.Conv1d(dim, width, k, padding=k // 2) for k in kernels)
        self.head = nn.Linear(width * len(kernels), num_classes)

    def forward(self, x: Tensor) -> Tensor:
        check_ids(x, self.vocab_size)
        keep = _keep_one_slot(x != PAD_ID).unsqueeze(1)  # an all-padding row keeps one slot
        h = self.embed(x).transpose(1, 2)  # (N, dim, L); pad embeddings are zero, like the conv's zero padding
        if self.pooling == "none":  # sequence labelling: each token's window features -> logits (N, L, C)
            return self.head(torch.cat([torch.relu(conv(h)) for conv in self.convs], dim=1).transpose(1, 2))
        pooled = [torch.relu(conv(h)).masked_fill(~keep, float("-inf")).amax(-1) for conv in self.convs]
        return self.head(torch.cat(pooled, dim=1))


class TextGRU(nn.Module):
    """A GRU over the non-pad tokens (packed, so padding is never read); the last hidden state feeds the head."""

    def __init__(self, vocab_size: int, num_classes: int, dim: int = 32, hidden: int = 64) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=PAD_ID)
        self.gru = nn.GRU(dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        check_ids(x, self.vocab_size)
        lengths = (x != PAD_ID).sum(1).clamp(min=1).cpu()  # text is left-aligned: the length is the pad-free count
        packed = pack_padded_sequence(self.embed(x), lengths, batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed)
        return self.head(last[-1])


def build_text_transformer(
    input_shape: Sequence[int], num_classes: int, vocab_size: int | None = None, dim: int = 64, heads: int = 4,
    layers: int = 2, ff_mult: int = 2, dropout: float = 0.1, pooling: str = "mean",
) -> TextTransformer:
    return TextTransformer(_need_vocab("text_transformer", vocab_size), _max_len(input_shape, "text_transformer"),
                           num_classes, dim, heads, layers, ff_mult, dropout, pooling)


def build_text_bow(
    input_shape: Sequence[int], num_classes: int, vocab_size: int | None = None, dim: int = 32, hidden: int = 0,
) -> BagOfWords:
    _max_len(input_shape, "text_bow")
    return BagOfWords(_need_vocab("text_bow", vocab_size), num_classes, dim, hidden)


def build_text_cnn(
    input_shape: Sequence[int], num_classes: int, vocab_size: int | None = None, dim: int = 32, width: int = 32,
    kernels: Sequence[int] = (3,), pooling: str = "max",
) -> TextCNN:
    _max_len(input_shape, "text_cnn")
    return TextCNN(_need_vocab("text_cnn", vocab_size), num_classes, dim, width, tuple(kernels), pooling)


def build_text_gru(
    input_shape: Sequence[int], num_classes: int, vocab_size: int | None = None, dim: int = 32, hidden: int = 64,
) -> TextGRU:
    _max_len(input_shape, "text_gru")
    return TextGRU(_need_vocab("text_gru", vocab_size), num_classes, dim, hidden)


class HFClassifier(nn.Module):
    """A Hugging Face sequence classifier as a kdkit model: forward(ids) -> logits, padding masked out."""

    def __init__(self, model: nn.Module, pad_id: int = PAD_ID) -> None:
        super().__init__()
        self.model, self.pad_id = model, pad_id
        self.vocab_size = int(model.config.vocab_size)

    def forward(self, x: Tensor) -> Tensor:
        check_ids(x, self.vocab_size)
        return self.model(input_ids=x, attention_mask=(x != self.pad_id).long()).logits


def resolve_hf(
    path: str, input_shape: Sequence[int], num_classes: int, vocab_size: int | None = None, pad_id: int = PAD_ID,
    raw_text: bool = False, **kwargs: Any,
) -> nn.Module:
    """`hf:<local dir>`: ``AutoModelForSequenceClassification`` from a directory written by ``save_pretrained``,
    read with ``local_files_only=True`` (nothing is downloaded). A head with another number of classes is replaced
    by a new one for `num_classes`. The model reads kdkit's token ids as they are, so its embeddings must belong to
    the same vocabulary (e.g. a model trained from scratch on it); `vocab_size`, when given, is checked to fit.

    With ``raw_text=True`` (data that carry raw text, ``data.raw_text: true``) the model tokenizes the text with the
    tokenizer saved in its folder instead: see :func:`kdkit.models.hf_text.load_hf_text` (options ``max_tokens``,
    ``keep_layers``, ``dropout``). A folder with its own tokenizer given kdkit's word ids (`vocab_size` set, raw
    text off) is refused: it would read the ids of another vocabulary as its own."""
    from kdkit.models.hf_text import has_tokenizer, load_hf_text

    _max_len(input_shape, "hf")
    if raw_text:
        return load_hf_text(path, num_classes, **kwargs)
    try:
        from transformers import AutoModelForSequenceClassification
    except ImportError:
        raise ConfigError("transformers is not installed; pip install 'kdkit[text]'") from None
    if not Path(path).is_dir():
        raise ModelError(f"hf:{path} is not a local directory; give a folder written by save_pretrained "
                         "(config.json + weights), nothing is downloaded")
    if vocab_size is not None and has_tokenizer(path):
        raise ModelError(f"hf:{path} has its own tokenizer, but the data are word ids of kdkit's vocabulary "
                         f"({vocab_size} words), which it would read as its own ids; set data.raw_text: true so "
                         "each model tokenizes the text its own way")
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path, local_files_only=True, num_labels=num_classes, ignore_mismatched_sizes=True, **kwargs)
    except (OSError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"cannot load hf:{path} as a sequence classifier ({first_line}); check the folder") from None
    wrapped = HFClassifier(model, pad_id)
    if vocab_size is not None and vocab_size > wrapped.vocab_size:
        raise ModelError(f"hf:{path} has {wrapped.vocab_size} token embeddings but the data's vocabulary has "
                         f"{vocab_size}; use a model built for this vocabulary")
    return wrapped


__all__ = ["BagOfWords", "TextCNN", "TextGRU", "TextTransformer", "build_text_bow", "build_text_cnn",
           "build_text_gru", "build_text_transformer", "check_ids", "masked_mean", "HFClassifier", "resolve_hf"]
