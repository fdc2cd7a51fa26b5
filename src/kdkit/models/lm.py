"""Causal language models: ``lm_transformer``, a small GPT-style decoder trained from scratch (Radford et al. 2019,
"Language Models are Unsupervised Multitask Learners": pre-norm blocks, learned positions, tied input/output
embeddings), and ``hf_lm:<folder>``, a Hugging Face ``AutoModelForCausalLM`` read from a local folder.

Both map token ids (N, L) to next-token logits (N, L, V): position l predicts token l + 1, so the labels of a
batch are the inputs shifted by one (kdkit.data.lm builds them that way) and the model is a per-token classifier
with V classes for the trainer, the losses and the metrics. Attention is causal; padding goes on the right, where
it can never be seen by a real position, so no padding mask is needed.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from kdkit.errors import ConfigError, ModelError


class LMTransformer(nn.Module):
    """GPT-style decoder: token + position embeddings, `layers` pre-norm causal self-attention blocks of `width`
    with `heads` heads (MLP 4x width, GELU), a final LayerNorm and an output layer tied to the token embedding."""

    def __init__(self, vocab_size: int, context: int = 64, layers: int = 2, width: int = 64, heads: int = 4,
                 dropout: float = 0.0) -> None:
        super().__init__()
        for key, value in (("vocab_size", vocab_size), ("context", context), ("layers", layers), ("width", width),
                           ("heads", heads)):
            if int(value) < 1:
                raise ValueError(f"lm_transformer: {key} must be >= 1, got {value}")
        if width % heads:
            raise ValueError(f"lm_transformer: width {width} must be divisible by heads {heads}")
        self.vocab_size, self.context = int(vocab_size), int(context)
        self.tokens = nn.Embedding(vocab_size, width)
        self.positions = nn.Embedding(context, width)
        self.drop = nn.Dropout(dropout)
        block = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size, bias=False)
        self.head.weight = self.tokens.weight  # tied embeddings
        nn.init.normal_(self.tokens.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)

    def forward(self, ids: Tensor) -> Tensor:
        length = ids.shape[-1]
        if length > self.context:
            raise ModelError(f"lm_transformer has a context of {self.context} tokens but got {length}; raise "
                             "context or shorten the sequences")
        h = self.tokens(ids) + self.positions(torch.arange(length, device=ids.device))
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=ids.device, dtype=h.dtype)
        h = self.blocks(self.drop(h), mask=causal, is_causal=True)
        return self.head(self.norm(h))


def build_lm_transformer(input_shape: Sequence[int], num_classes: int, vocab_size: int | None = None,
                         context: int | None = None, layers: int = 2, width: int = 64, heads: int = 4,
                         dropout: float = 0.0) -> LMTransformer:
    """input_shape (L,) sequence length; num_classes = the vocabulary size (one class per next token)."""
    vocab = vocab_size or num_classes
    if vocab != num_classes:
        raise ConfigError(f"lm_transformer predicts one of num_classes={num_classes} tokens but vocab_size is "
                          f"{vocab}; they must be equal for a language model")
    return LMTransformer(vocab, context or int(input_shape[-1]), layers, width, heads, dropout)


class HFCausalLM(nn.Module):
    """Wraps a Hugging Face causal LM so that forward(ids) returns logits (N, L, V), like lm_transformer.
    Right padding needs no attention mask with causal attention; the tokenizer is kept as `.tokenizer`.

    Checkpoints often pad their embedding table past the tokenizer (to a multiple of 64, say): the logits are then
    sliced to the tokenizer's ``len`` (the rows beyond it are ids no text encodes to), with a warning, so that
    `vocab_size` is the tokenizer's and two models of one tokenizer compare id by id whatever their padding."""

    def __init__(self, model: nn.Module, tokenizer: Any = None) -> None:
        super().__init__()
        self.model, self.tokenizer = model, tokenizer
        self.embedding_rows = int(model.get_input_embeddings().weight.shape[0])
        self.vocab_size = self.embedding_rows
        if tokenizer is not None and 0 < len(tokenizer) < self.embedding_rows:
            warnings.warn(f"note: the model has {self.embedding_rows} token embeddings but its tokenizer "
                          f"{len(tokenizer)} tokens; its logits are sliced to the tokenizer's {len(tokenizer)}",
                          stacklevel=2)
            self.vocab_size = len(tokenizer)

    def forward(self, ids: Tensor) -> Tensor:
        logits = self.model(input_ids=ids, use_cache=False).logits
        return logits[..., :self.vocab_size] if self.vocab_size < logits.shape[-1] else logits


def load_causal_lm(path: str | Path, **kwargs: Any) -> HFCausalLM:
    """``AutoModelForCausalLM`` and its tokenizer from a local folder written by ``save_pretrained``, read with
    ``local_files_only=True``: nothing is downloaded. Errors are one line naming the folder."""
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise ConfigError("transformers is not installed; pip install 'kdkit[text]'") from None
    if not Path(path).is_dir():
        raise ModelError(f"hf_lm:{path} is not a local directory; give a folder written by save_pretrained "
                         "(config.json, weights, tokenizer files); nothing is downloaded")
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, **kwargs)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"cannot load hf_lm:{path} as a causal LM ({first}); check the folder") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"hf_lm:{path} has no usable tokenizer ({first}); save it with "
                         "tokenizer.save_pretrained(folder)") from None
    return HFCausalLM(model, tokenizer)


def resolve_hf_lm(path: str, input_shape: Sequence[int], num_classes: int, vocab_size: int | None = None,
                  **kwargs: Any) -> HFCausalLM:
    """`hf_lm:<local dir>` for build_model: the model's vocabulary must hold num_classes (the data's) tokens."""
    wrapped = load_causal_lm(path, **kwargs)
    needed = max(num_classes, vocab_size or 0)
    if needed > wrapped.vocab_size:
        raise ModelError(f"hf_lm:{path} has {wrapped.vocab_size} token embeddings but the data uses {needed} ids; "
                         "tokenize the data with this model's tokenizer")
    return wrapped


__all__ = ["HFCausalLM", "LMTransformer", "build_lm_transformer", "load_causal_lm", "resolve_hf_lm"]
