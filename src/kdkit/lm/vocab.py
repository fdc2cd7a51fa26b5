"""Vocabulary check for token-level distillation: a per-token divergence compares the teacher's probability of
id v with the student's probability of id v, which only means something if id v is the same token in both
tokenizers. Run before training; a mismatch is one line naming the first differing id and its two tokens."""

from __future__ import annotations

from typing import Any

from kdkit.errors import ModelError


def id_to_token(tokenizer: Any) -> dict[int, str]:
    """id -> token string of a Hugging Face tokenizer or a kdkit CharTokenizer (added tokens included)."""
    if not hasattr(tokenizer, "get_vocab"):
        raise ModelError(f"cannot read the vocabulary of {type(tokenizer).__name__}: it has no get_vocab()")
    return {int(i): str(t) for t, i in tokenizer.get_vocab().items()}


def check_same_vocabulary(teacher_tokenizer: Any, student_tokenizer: Any, teacher_vocab_size: int | None = None,
                          student_vocab_size: int | None = None) -> int:
    """Return the shared vocabulary size, or raise one line naming the first id that maps to different tokens.

    `*_vocab_size` (the models' output sizes, which may include padding rows beyond the tokenizer) must match too:
    the logits are compared position by position."""
    t, s = id_to_token(teacher_tokenizer), id_to_token(student_tokenizer)
    for i in sorted(set(t) | set(s)):
        if t.get(i) != s.get(i):
            raise ModelError(
                f"teacher and student tokenizers differ at id {i}: teacher {t.get(i, '<none>')!r}, student "
                f"{s.get(i, '<none>')!r}; token-level distillation needs the same vocabulary (same tokenizer)")
    if teacher_vocab_size is not None and student_vocab_size is not None \
            and teacher_vocab_size != student_vocab_size:
        raise ModelError(f"teacher predicts {teacher_vocab_size} tokens but the student {student_vocab_size}, with "
                         "the same tokenizer; resize one model's embeddings (resize_token_embeddings) to match")
    return len(t)


def check_model_vocabularies(teacher: Any, student: Any) -> None:
    """check_same_vocabulary on two models that carry their tokenizers (hf_lm: models, `.tokenizer`); then, for
    any two models that state their output size (`vocab_size`: lm_transformer, hf_lm:), that the sizes agree.
    Models without a tokenizer (lm_transformer on kdkit data) share the data's."""
    t_tok, s_tok = getattr(teacher, "tokenizer", None), getattr(student, "tokenizer", None)
    t_size, s_size = getattr(teacher, "vocab_size", None), getattr(student, "vocab_size", None)
    if t_tok is not None and s_tok is not None:
        check_same_vocabulary(t_tok, s_tok, t_size, s_size)
    elif isinstance(t_size, int) and isinstance(s_size, int) and t_size != s_size:
        raise ModelError(f"teacher predicts {t_size} tokens but the student {s_size}; token-level distillation "
                         "compares the two id by id and needs one vocabulary (the same tokenizer)")


__all__ = ["check_model_vocabularies", "check_same_vocabulary", "id_to_token"]
