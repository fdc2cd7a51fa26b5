"""Distillation between a teacher and a student of different tokenizers with Universal Logit Distillation
(Boizard et al. 2024; kdkit.losses.uld): the student's next-token distributions are compared with the teacher's at
the positions aligned by text (kdkit.lm.cross_tokenizer), by the Wasserstein distance of their sorted
probabilities, beside the student's cross-entropy on the data:

    L = ce_weight * CE(s, y) + weight * mean_{aligned, labelled positions} W1(p_s, p_t)

The loader yields the student's rows with their sample indices (kdkit.data.Indexed over CrossTokenizerRows); the
teacher's rows and the alignment are read by index.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kdkit.errors import ConfigError
from kdkit.lm.cross_tokenizer import CrossTokenizerRows
from kdkit.losses.kd import hard_label_ce
from kdkit.losses.uld import ULD
from kdkit.trainer.step import Scheme


class ULDDistillation(Scheme):
    def __init__(self, student: nn.Module, teacher: nn.Module, rows: CrossTokenizerRows, weight: float = 1.0,
                 ce_weight: float = 1.0, T: float = 1.0, top_k: int | None = None) -> None:
        super().__init__(student)
        self.teacher = teacher.eval().requires_grad_(False)
        self.rows, self.weight, self.ce_weight = rows, float(weight), float(ce_weight)
        self.uld = ULD(T=T, top_k=top_k)

    def to(self, device: torch.device) -> ULDDistillation:
        super().to(device)
        self.teacher.to(device)
        return self

    def losses(self, x: Tensor, y: Tensor | None, epoch: int, index: Tensor | None = None):
        if index is None:
            raise ConfigError("the teacher's rows are read by sample index; wrap the training set in "
                              "kdkit.data.Indexed")
        logits = self.student(x)
        index = index.cpu()
        where = self.rows.teacher_position[index].to(logits.device)
        self.teacher.eval()
        with torch.no_grad():
            t_logits = self.teacher(self.rows.teacher_x[index].to(logits.device))
        valid = where >= 0
        if y is not None:
            valid &= y >= 0
        batch = torch.arange(len(x), device=logits.device)[:, None].expand_as(where)
        uld = self.uld(logits[valid], t_logits[batch[valid], where[valid]])
        weighted, raw = {"uld": self.weight * uld}, {"uld": uld.detach()}
        if self.ce_weight and y is not None:
            ce = hard_label_ce(logits, y)
            weighted["ce"], raw["ce"] = self.ce_weight * ce, ce.detach()
        return weighted, raw, logits


__all__ = ["ULDDistillation"]
