"""Hugging Face text models that tokenize raw text with their own tokenizer (``hf:<folder>`` with ``raw_text``).

The folder is one written by ``save_pretrained`` (config.json, weights) plus the tokenizer's files
(``tokenizer.json`` or ``vocab.txt`` ...); both are read with ``local_files_only=True``, so nothing reaches a
network (set ``HF_HUB_OFFLINE=1`` too). The input is a raw-text batch (:mod:`kdkit.models.raw_text`): forward
decodes it, tokenizes it with padding to the longest text of the batch and truncation to ``max_tokens``, and runs
the model. Integer ids (the model's own token ids, padded with the tokenizer's pad id) are accepted too.

Heads. A folder saved from a sequence classifier (``*ForSequenceClassification``) keeps its architecture; its
head is replaced when the number of classes differs. A folder that holds an encoder only (``BertModel``, as
sentence-transformers' all-MiniLM-L6-v2) gets kdkit's head: the mean of the last hidden states over the real
tokens (the pooling the sentence encoder was trained with), dropout, and a linear layer,

    logits = W * (sum_t m_t h_t / sum_t m_t) + b          m: the attention mask, h: the last layer's states.

``keep_layers`` keeps a subset of the encoder's layers, in order: the DistilBERT initialisation (Sanh et al. 2019,
*DistilBERT, a distilled version of BERT*, "taking one layer out of two"). An int n keeps n layers spread uniformly,
``i * L // n`` for i = 0..n-1 ([0, 2, 4] of 6 for n = 3, [0, 3] for n = 2); a list names them (0-based).
:func:`student_from_teacher` does the same from an already fine-tuned teacher, head included.

Tap points for transformer-to-transformer losses (module paths, filled only when a loss term reads them, so plain
forwards pay nothing): ``kd_hidden`` (N, L+1, T, D) the embedding output and every layer's output;
``kd_queries``, ``kd_keys``, ``kd_values`` (N, L, H, T, D/H) each layer's self-attention projections split into
heads; ``kd_mask`` (N, T) 1.0 at real tokens. See :mod:`kdkit.losses.hidden_mse` and friends.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from kdkit.errors import ConfigError, ModelError
from kdkit.models.raw_text import decode_texts, is_raw_text

TAP_POINTS = ("kd_hidden", "kd_queries", "kd_keys", "kd_values", "kd_mask")
_PROJECTIONS = {"kd_queries": "query", "kd_keys": "key", "kd_values": "value"}
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "spiece.model", "vocab.json")


def has_tokenizer(folder: str | Path) -> bool:
    """Whether a model folder holds a tokenizer's files."""
    return any((Path(folder) / name).is_file() for name in TOKENIZER_FILES)


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _layers(backbone: nn.Module) -> nn.ModuleList:
    """The encoder's list of layers (BERT family: ``<base>.encoder.layer``)."""
    base = getattr(backbone, "base_model", backbone)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise ModelError(f"{type(backbone).__name__} has no encoder.layer list; keep_layers and the transformer "
                         "losses support BERT-style encoders (BERT, MiniLM, RoBERTa, ELECTRA)")
    return layers


def uniform_layers(total: int, keep: int | Sequence[int]) -> list[int]:
    """The 0-based layer indices `keep` names: an int n -> i * total // n (i < n); a list is checked and kept."""
    if isinstance(keep, bool):
        raise ConfigError(f"keep_layers must be a number of layers or a list of layer indices, got {keep!r}")
    if isinstance(keep, int):
        if not 1 <= keep <= total:
            raise ConfigError(f"keep_layers: {keep} layers asked, but the model has {total}; give 1..{total}")
        return [i * total // keep for i in range(keep)]
    chosen = [int(i) for i in keep]
    bad = [i for i in chosen if not 0 <= i < total]
    if not chosen or bad or len(set(chosen)) != len(chosen) or chosen != sorted(chosen):
        raise ConfigError(f"keep_layers {list(keep)} must be distinct, increasing layer indices in 0..{total - 1} "
                          f"(the model has {total} layers)")
    return chosen


class HFTextModel(nn.Module):
    """A Hugging Face encoder (with its classification head, or kdkit's mean-pooling head) that reads raw text.

    ``self.backbone`` is the transformers model; ``self.head`` kdkit's head (None when the backbone is a sequence
    classifier); ``self.tokenizer`` the tokenizer (not a module: never saved in a state dict, always re-read from
    the folder)."""

    def __init__(self, backbone: nn.Module, tokenizer: Any, num_classes: int, max_tokens: int = 128,
                 head: bool = True, dropout: float = 0.1) -> None:
        super().__init__()
        self.backbone, self.tokenizer, self.max_tokens = backbone, tokenizer, int(max_tokens)
        config = backbone.config
        self.hidden_size = int(config.hidden_size)
        self.num_heads = int(config.num_attention_heads)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.hidden_size, num_classes)) if head else None
        self.vocab_size = int(config.vocab_size)
        self.pad_id = int(getattr(tokenizer, "pad_token_id", None) or getattr(config, "pad_token_id", 0) or 0)
        for name in TAP_POINTS:
            setattr(self, name, nn.Identity())

    @property
    def num_layers(self) -> int:
        return len(_layers(self.backbone))

    @property
    def tokenizer_id(self) -> tuple[str, int]:
        """(class name, vocabulary size) of the tokenizer: two models with different ids read different ids."""
        return type(self.tokenizer).__name__, len(self.tokenizer)

    def tokenize(self, texts: Sequence[str], device: torch.device | None = None) -> dict[str, Tensor]:
        """input_ids and attention_mask of `texts`, padded to the longest and cut at max_tokens."""
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_tokens,
                             return_tensors="pt")
        return {"input_ids": enc["input_ids"].to(device), "attention_mask": enc["attention_mask"].to(device)}

    def _inputs(self, x: Tensor) -> dict[str, Tensor]:
        if is_raw_text(x):
            return self.tokenize(decode_texts(x), x.device)
        if x.is_floating_point() or x.dim() != 2:
            raise ModelError(f"an hf: text model reads raw text (uint8) or its own token ids (batch, length); got "
                             f"{x.dtype} with shape {tuple(x.shape)}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.vocab_size):
            raise ModelError(f"token id {int(x.max())} is outside this model's vocabulary of {self.vocab_size}; give "
                             "raw text (data.raw_text: true) or ids of this model's own tokenizer")
        return {"input_ids": x, "attention_mask": (x != self.pad_id).long()}

    def _wanted(self) -> set[str]:
        return {name for name in TAP_POINTS if getattr(self, name)._forward_hooks}

    def forward(self, x: Tensor) -> Tensor:
        return self.classify(**self._inputs(x))

    def classify(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """Logits from what the tokenizer gives (the ONNX export's inputs). One text per row is one segment, so
        token_type_ids, when given, are zeros: the backbone's default, which the raw-text forward leaves it."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        wanted = self._wanted()
        projections: dict[str, list[Tensor]] = {name: [] for name in _PROJECTIONS if name in wanted}
        handles = []
        if projections:
            for layer in _layers(self.backbone):
                attention = layer.attention.self
                for name in projections:
                    module = getattr(attention, _PROJECTIONS[name])
                    handles.append(module.register_forward_hook(
                        lambda _m, _i, out, _store=projections[name]: _store.append(out)))
        try:
            out = self.backbone(**inputs, output_hidden_states="kd_hidden" in wanted, return_dict=True)
        finally:
            for handle in handles:
                handle.remove()
        mask = inputs["attention_mask"]
        if "kd_mask" in wanted:
            self.kd_mask(mask.float())
        if "kd_hidden" in wanted:
            self.kd_hidden(torch.stack(out.hidden_states, dim=1))
        for name, outputs in projections.items():  # (N, T, D) per layer -> (N, L, H, T, D/H)
            n, t, d = outputs[0].shape
            stacked = torch.stack(outputs, dim=1).view(n, len(outputs), t, self.num_heads, d // self.num_heads)
            getattr(self, name)(stacked.transpose(2, 3))
        if self.head is None:
            return out.logits
        last = out.last_hidden_state
        weights = mask.unsqueeze(-1).to(last.dtype)
        return self.head((last * weights).sum(1) / weights.sum(1).clamp(min=1.0))

    def keep_layers(self, keep: int | Sequence[int]) -> list[int]:
        """Keep only the named encoder layers, in place (DistilBERT-style initialisation); returns their indices."""
        layers = _layers(self.backbone)
        chosen = uniform_layers(len(layers), keep)
        kept = nn.ModuleList(layers[i] for i in chosen)
        for new_index, layer in enumerate(kept):  # attention modules know their index (for caches)
            for module in layer.modules():
                if hasattr(module, "layer_idx"):
                    module.layer_idx = new_index
        base = getattr(self.backbone, "base_model", self.backbone)
        base.encoder.layer = kept
        self.backbone.config.num_hidden_layers = len(kept)
        return chosen


def student_from_teacher(teacher: HFTextModel, keep: int | Sequence[int]) -> HFTextModel:
    """A copy of a (fine-tuned) teacher with a subset of its layers: embeddings, the kept layers and the head are the
    teacher's weights, the tokenizer is shared. DistilBERT (Sanh et al. 2019) initialises its student this way."""
    if not isinstance(teacher, HFTextModel):
        raise ModelError(f"student_from_teacher needs an hf: text model as the teacher, got {type(teacher).__name__}")
    student = copy.deepcopy(teacher)
    student.backbone.config = copy.deepcopy(teacher.backbone.config)
    student.keep_layers(keep)
    return student.train(teacher.training).requires_grad_(True)


def load_hf_text(
    path: str, num_classes: int, max_tokens: int = 128, keep_layers: int | Sequence[int] | None = None,
    dropout: float = 0.1, **kwargs: Any,
) -> HFTextModel:
    """The folder's model and tokenizer, offline; see the module docstring for the head and `keep_layers`."""
    try:
        from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer
    except ImportError:
        raise ConfigError("transformers is not installed; pip install 'kdkit[text]'") from None
    folder = Path(path)
    if not folder.is_dir():
        raise ModelError(f"hf:{path} is not a local directory; give a folder written by save_pretrained "
                         "(config.json + weights + tokenizer files), nothing is downloaded")
    if not has_tokenizer(folder):
        raise ModelError(f"hf:{path} holds no tokenizer (tokenizer.json, vocab.txt, ...), so it cannot read raw text; "
                         "save one there (tokenizer.save_pretrained) or set data.raw_text: false for kdkit's word ids")
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # the load report lists the unused pooler of an encoder-only folder
    hf_logging.disable_progress_bar()
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        classifier = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
        if classifier:
            backbone = AutoModelForSequenceClassification.from_pretrained(
                folder, local_files_only=True, num_labels=num_classes, ignore_mismatched_sizes=True, **kwargs)
        else:
            try:  # BERT-style encoders build a pooler that kdkit's head does not use
                backbone = AutoModel.from_pretrained(folder, local_files_only=True, add_pooling_layer=False, **kwargs)
            except TypeError:
                backbone = AutoModel.from_pretrained(folder, local_files_only=True, **kwargs)
    except (OSError, ValueError, TypeError) as err:
        raise ModelError(f"cannot load hf:{path} ({_one_line(err)}); check the folder") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    model = HFTextModel(backbone, tokenizer, num_classes, max_tokens, head=not classifier, dropout=dropout)
    if keep_layers is not None:
        model.keep_layers(keep_layers)
    return model


__all__ = ["HFTextModel", "TAP_POINTS", "has_tokenizer", "load_hf_text", "student_from_teacher", "uniform_layers"]
