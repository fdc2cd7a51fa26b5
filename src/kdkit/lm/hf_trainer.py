"""kdkit's token divergences inside Hugging Face's ``Trainer`` (and TRL's trainers, which subclass it): a frozen
teacher, the student's own cross-entropy and one divergence, in a few lines.

    from kdkit.lm.hf_trainer import DistillationTrainer
    trainer = DistillationTrainer(model=student, teacher_model=teacher, divergence="jsd", divergence_options={"beta":
                                  0.5}, ce_weight=0.5, args=TrainingArguments(...), train_dataset=...)
    trainer.train()

The loss of a batch with Hugging Face labels (the input ids, -100 where nothing is predicted; the model shifts
them) is

    L = ce_weight * CE(student) + weight * D(p_t || p_s)   over the positions whose next token is labelled

(with no labels: every position the attention mask keeps, and no CE). :func:`distillation_loss` is the same
computation for a trainer of your own (`compute_loss` of a TRL subclass, say). ``fused=True`` computes the divergence
and the CE from the two models' final hidden states and LM heads chunk by chunk of tokens
(kdkit.losses.fused_head), so that neither model's (tokens, V) logits are held: it assumes the logits are
``get_output_embeddings()(last hidden state)``, which holds for GPT-2, Llama, Qwen and Mistral but not for models
that scale or soft-cap their logits.

Vocabularies: a divergence compares the models id by id. Their output sizes may differ by padding rows (checkpoints
pad to a multiple of 64): both are then sliced to the tokenizer's length (`processing_class`); without a tokenizer,
or when the tokenizer is longer than either head, the trainer refuses to start in one line.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from kdkit.errors import ConfigError, ModelError
from kdkit.losses.fused_head import fused_head_divergence
from kdkit.losses.token_divergence import TokenDivergence

try:
    from transformers import Trainer
except ImportError as err:  # pragma: no cover - transformers is the text extra
    raise ConfigError("kdkit.lm.hf_trainer needs transformers and accelerate; pip install 'kdkit[text]'") from err

IGNORE = -100


def build_divergence(divergence: str | TokenDivergence, **options: Any) -> TokenDivergence:
    """forward_kl, reverse_kl, jsd or tv by name (options such as T, beta, chunk_size), or an instance."""
    from kdkit.losses import build_loss

    loss = divergence if isinstance(divergence, TokenDivergence) else build_loss(divergence, **options)
    if not isinstance(loss, TokenDivergence):
        raise ConfigError(f"DistillationTrainer needs a token divergence (forward_kl, reverse_kl, jsd, tv), not "
                          f"'{divergence}'")
    return loss


def output_size(model: nn.Module) -> int:
    head = model.get_output_embeddings()
    if head is None or getattr(head, "weight", None) is None:
        raise ModelError(f"{type(model).__name__} has no output embeddings (LM head); distillation needs a causal LM")
    return int(head.weight.shape[0])


def shared_vocabulary(student: nn.Module, teacher: nn.Module, tokenizer: Any = None) -> int:
    """The number of leading ids the two models' logits are compared on: their common output size, or the
    tokenizer's length where padding rows make the sizes differ. One line when they cannot be compared."""
    s, t = output_size(student), output_size(teacher)
    if s == t:
        return s
    if tokenizer is None:
        raise ModelError(f"teacher predicts {t} tokens but the student {s}; give the tokenizer (processing_class) "
                         "if the difference is padding rows, or use models of one vocabulary")
    size = len(tokenizer)
    if size > min(s, t):
        raise ModelError(f"the tokenizer has {size} tokens but the teacher predicts {t} and the student {s}; "
                         "token-level distillation needs both models to cover the tokenizer")
    return size


def _shifted(inputs: dict[str, Any]) -> tuple[Tensor | None, Tensor | None]:
    """(next-token targets, mask) aligned with positions 0..L-2: from labels, else from the attention mask."""
    labels = inputs.get("labels")
    if labels is not None:
        target = labels[:, 1:]
        return target, target != IGNORE
    attention = inputs.get("attention_mask")
    if attention is not None:
        return None, attention[:, 1:].bool() & attention[:, :-1].bool()
    return None, None


def _model_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in inputs.items() if k != "labels"}


def _chunked_ce(hidden: Tensor, head: nn.Module, target: Tensor, vocab: int, chunk: int) -> Tensor:
    """Mean cross-entropy of head(hidden) over the labelled rows, chunk by chunk (recomputed in backward)."""
    rows = target != IGNORE
    h, y = hidden[rows], target[rows]
    if not len(y):
        return hidden.sum() * 0.0

    def part(h_part: Tensor, y_part: Tensor) -> Tensor:
        return F.cross_entropy(head(h_part)[..., :vocab].float(), y_part, reduction="sum")

    total = sum(checkpoint(part, h[i:i + chunk], y[i:i + chunk], use_reentrant=False) for i in range(0, len(y), chunk))
    return total / len(y)


def distillation_loss(model: nn.Module, teacher: nn.Module, inputs: dict[str, Any],
                      divergence: TokenDivergence, weight: float = 1.0, ce_weight: float = 1.0,
                      vocab_size: int | None = None, fused: bool = False,
                      chunk_size: int = 1024) -> tuple[Tensor, dict[str, Tensor], Any]:
    """(loss, its parts detached, the student's outputs) for one batch of Hugging Face inputs; the teacher runs
    without gradient. See the module docstring for the formula."""
    target, mask = _shifted(inputs)
    vocab = vocab_size or shared_vocabulary(model, teacher)
    with torch.no_grad():
        teacher_out = (teacher.base_model if fused else teacher)(**_model_inputs(inputs))
    parts: dict[str, Tensor] = {}
    if fused:
        outputs = model.base_model(**_model_inputs(inputs))
        h_s, h_t = outputs.last_hidden_state[:, :-1], teacher_out.last_hidden_state[:, :-1]
        s_head, t_head = model.get_output_embeddings(), teacher.get_output_embeddings()
        parts["divergence"] = fused_head_divergence(
            divergence, h_s, _Rows(s_head, vocab), h_t, _Rows(t_head, vocab), mask=mask, chunk_size=chunk_size)
        if ce_weight and target is not None:
            parts["ce"] = _chunked_ce(h_s, s_head, target, vocab, chunk_size)
    else:
        outputs = model(**_model_inputs(inputs))
        s_logits, t_logits = outputs.logits[:, :-1, :vocab], teacher_out.logits[:, :-1, :vocab]
        parts["divergence"] = divergence(s_logits, t_logits, mask=mask)
        if ce_weight and target is not None:
            valid = target != IGNORE
            parts["ce"] = F.cross_entropy(s_logits[valid].float(), target[valid]) if bool(valid.any()) \
                else s_logits.sum() * 0.0
    loss = weight * parts["divergence"] + (ce_weight * parts["ce"] if "ce" in parts else 0.0)
    return loss, {k: v.detach() for k, v in parts.items()}, outputs


class _Rows:
    """The first `vocab` rows of a head's weight (and bias): logits over the shared vocabulary only."""

    def __init__(self, head: nn.Module, vocab: int) -> None:
        self.weight = head.weight[:vocab]
        bias = getattr(head, "bias", None)
        self.bias = bias[:vocab] if bias is not None else None


class DistillationTrainer(Trainer):
    """``transformers.Trainer`` whose loss is :func:`distillation_loss` with a frozen `teacher_model`.

    divergence: forward_kl, reverse_kl, jsd or tv (or a kdkit TokenDivergence), with `divergence_options` (T, beta,
    chunk_size); weight and ce_weight as in the formula; fused: the chunked head path (see the module docstring)."""

    def __init__(self, *args: Any, teacher_model: nn.Module, divergence: str | TokenDivergence = "forward_kl",
                 divergence_options: dict[str, Any] | None = None, weight: float = 1.0, ce_weight: float = 1.0,
                 fused: bool = False, fused_chunk_size: int = 1024, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.divergence = build_divergence(divergence, **(divergence_options or {}))
        tokenizer = getattr(self, "processing_class", None) or kwargs.get("tokenizer")
        self.vocab_size = shared_vocabulary(self.model, teacher_model, tokenizer)  # before any step
        self.teacher = teacher_model.eval().requires_grad_(False).to(self.args.device)
        self.weight, self.ce_weight = float(weight), float(ce_weight)
        self.fused, self.fused_chunk_size = bool(fused), int(fused_chunk_size)

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Tensor | tuple[Tensor, Any]:
        loss, _parts, outputs = distillation_loss(model, self.teacher, inputs, self.divergence, self.weight,
                                                  self.ce_weight, self.vocab_size, self.fused,
                                                  self.fused_chunk_size)
        return (loss, outputs) if return_outputs else loss


__all__ = ["DistillationTrainer", "distillation_loss", "shared_vocabulary"]
