"""Offline distillation: a frozen, pre-trained teacher teaches one student.

The teacher is put in eval mode at every step (BatchNorm statistics and dropout stay as trained, even if the
user left it in train mode), its parameters have requires_grad=False, and its forward runs under no_grad.

With ``cache_size=N`` (the length of the training set, whose loader yields sample indices, see
:class:`kdkit.data.Indexed`) the teacher's outputs are computed once per sample and reused in later epochs.
Only valid when a sample's input is the same every epoch (no random augmentation).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from kdkit.adapters import attach_adapters
from kdkit.schemes.base import Scheme
from kdkit.taps import Taps
from kdkit.terms import LossTerm, active_terms, tapped_paths


class TeacherCache:
    """Teacher outputs stored per sample index, on the device they were computed on."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.filled = torch.zeros(size, dtype=torch.bool)
        self.store: dict[str, Tensor] = {}

    def get(self, index: Tensor) -> dict[str, Tensor] | None:
        if not bool(self.filled[index.cpu()].all()):
            return None
        return {k: v[index.to(v.device)] for k, v in self.store.items()}

    def put(self, index: Tensor, outputs: dict[str, Tensor]) -> None:
        for key, value in outputs.items():
            if key not in self.store:
                self.store[key] = value.new_zeros((self.size, *value.shape[1:]))
            self.store[key][index.to(value.device)] = value
        self.filled[index.cpu()] = True


class OfflineDistillation(Scheme):
    def __init__(
        self, student: nn.Module, teacher: nn.Module, terms: Sequence[LossTerm], cache_size: int | None = None,
        example: Tensor | None = None,
    ) -> None:
        """`example`: a few training inputs; when given, adapters are attached at once (see attach_adapters)."""
        super().__init__(student)
        self.teacher = teacher.eval().requires_grad_(False)
        self.terms = list(terms)
        self.extras.extend(self.terms)  # adapters inside terms train with the student
        student_paths, teacher_paths = tapped_paths(self.terms)
        self.student_taps = Taps(student, student_paths)
        self.teacher_taps = Taps(teacher, teacher_paths)
        self.cache = TeacherCache(cache_size) if cache_size else None
        if example is not None:
            self.attach_adapters(example)

    def attach_adapters(self, example: Tensor) -> list[str]:
        """Create the adapters of terms whose student and teacher features differ in shape (e.g. FitNets), by one
        eval-mode forward of both models on `example`. Call before `fit`, which builds the optimiser."""
        return attach_adapters(self.student, self.teacher, self.terms, example)

    def to(self, device: torch.device) -> OfflineDistillation:
        super().to(device)
        self.teacher.to(device)
        return self

    @torch.no_grad()
    def compute_teacher_outputs(self, x: Tensor) -> dict[str, Tensor]:
        """The teacher's logits and tapped features for `x` (subclasses with several teachers override this)."""
        self.teacher.eval()
        return self.teacher_taps(x)

    @torch.no_grad()
    def teacher_outputs(self, x: Tensor, index: Tensor | None = None) -> dict[str, Tensor]:
        """compute_teacher_outputs, from the per-sample cache where there is one."""
        if self.cache is None or index is None:
            return self.compute_teacher_outputs(x)
        cached = self.cache.get(index)
        if cached is None:
            cached = self.compute_teacher_outputs(x)
            self.cache.put(index, cached)
        return cached

    def losses(self, x: Tensor, y: Tensor | None, epoch: int, index: Tensor | None = None):
        terms = active_terms(self.terms, epoch)  # terms past their until_epoch are neither computed nor logged
        # once only teacher-free terms remain (early-stopped KD: CE alone), the teacher's forward is saved too
        teacher_out = self.teacher_outputs(x, index) if any(t.uses_teacher for t in terms) else None
        student_out = self.student_taps(x)
        weighted, raw = {}, {}
        for term in terms:
            weighted[term.name], raw[term.name] = term(student_out, teacher_out, y, epoch)
        return weighted, raw, student_out["logits"]

    @torch.no_grad()
    def eval_logits(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        self.teacher.eval()
        return self.student(x), self.teacher(x)

    def resume_state(self) -> dict[str, Tensor]:
        """The teacher cache, checkpointed by fit, so a resumed run reuses the same teacher outputs."""
        if self.cache is None:
            return {}
        stored = {f"cache.{k}": v for k, v in self.cache.store.items()}
        return {"filled": self.cache.filled.to(torch.uint8), **stored}

    def load_resume_state(self, state: dict[str, Tensor]) -> None:
        if self.cache is None or "filled" not in state:
            return
        device = next(self.teacher.parameters(), torch.empty(0)).device  # fit has moved the teacher by now
        self.cache.filled = state["filled"].bool()
        self.cache.store = {k.removeprefix("cache."): v.to(device) for k, v in state.items() if k != "filled"}

    def close(self) -> None:
        """Remove the forward hooks from both models."""
        self.student_taps.remove()
        self.teacher_taps.remove()
