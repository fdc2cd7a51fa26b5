"""Teacher and student of different tokenizers: the two sequences of one text are aligned by the text itself.

A causal LM's logits at position i predict token i + 1 from the text before it. Student token a and teacher token
b that start at the same character of the text are predicted from the same prefix, so the student's logits at
a - 1 and the teacher's at b - 1 answer the same question ("what comes after this text?") over two vocabularies:
those pairs of positions are compared (by a cross-vocabulary loss such as kdkit.losses.uld); a token that starts
inside the other model's token has no counterpart and is not compared. (The ULD paper truncates both sequences
to the shorter length instead, which pairs positions that may predict different parts of the text.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from kdkit.errors import DataError

Encoder = Callable[[str], tuple[list[int], list[int]]]  # text -> (token ids, start character of each token)


def aligned_positions(student_starts: Sequence[int], teacher_starts: Sequence[int]) -> list[tuple[int, int]]:
    """Pairs (i, j) of logit positions, student i and teacher j, whose next tokens (i + 1, j + 1) start at the
    same character; increasing in both."""
    teacher_token = {start: j for j, start in enumerate(teacher_starts) if j > 0}
    return [(i - 1, teacher_token[start] - 1) for i, start in enumerate(student_starts)
            if i > 0 and start in teacher_token]


@dataclass
class CrossTokenizerRows:
    """Both tokenizations of the same texts, rows padded to their own lengths: the student's inputs `x` and
    next-token labels `y` (-1 where nothing is predicted), the teacher's inputs `teacher_x`, and `teacher_position`
    (N, L_s): for each student logit position, the teacher's logit position aligned with it, or -1."""

    x: Tensor
    y: Tensor
    teacher_x: Tensor
    teacher_position: Tensor

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.x[i], self.y[i]


def encode_cross(texts: Sequence[str], student: Encoder, teacher: Encoder, seq_len: int, teacher_len: int,
                 pad_id: int = 0, teacher_pad_id: int = 0) -> CrossTokenizerRows:
    """One row per text for each model (cut to seq_len + 1 and teacher_len + 1 tokens, padded on the right),
    and the text alignment between them (see the module docstring)."""
    if not texts:
        raise DataError("no texts to encode")
    x = torch.full((len(texts), seq_len), pad_id, dtype=torch.long)
    y = torch.full((len(texts), seq_len), -1, dtype=torch.long)
    tx = torch.full((len(texts), teacher_len), teacher_pad_id, dtype=torch.long)
    where = torch.full((len(texts), seq_len), -1, dtype=torch.long)
    for row, text in enumerate(texts):
        s_ids, s_starts = student(text)
        t_ids, t_starts = teacher(text)
        s_ids, s_starts = s_ids[:seq_len + 1], s_starts[:seq_len + 1]
        t_ids, t_starts = t_ids[:teacher_len + 1], t_starts[:teacher_len + 1]
        n = len(s_ids) - 1
        if n > 0:
            x[row, :n], y[row, :n] = torch.tensor(s_ids[:-1]), torch.tensor(s_ids[1:])
        if len(t_ids) > 1:
            tx[row, :len(t_ids) - 1] = torch.tensor(t_ids[:-1])
        for i, j in aligned_positions(s_starts, t_starts):
            where[row, i] = j
    return CrossTokenizerRows(x, y, tx, where)


__all__ = ["CrossTokenizerRows", "Encoder", "aligned_positions", "encode_cross"]
