"""Offline distillation: a frozen, pre-trained teacher teaches one student.

The teacher is put in eval mode at every step (BatchNorm statistics and dropout stay as trained, even if the
user left it in train mode), its parameters have requires_grad=False, and its forward runs under
torch.inference_mode; the loss terms get copies made outside it, with no autograd graph.

With ``cache_size=N`` (the length of the training set, whose loader yields sample indices, see
:class:`kdkit.data.Indexed`) the teacher's outputs are computed once per sample and reused in later epochs, and
its validation logits once per fit (see kdkit.trainer.teacher_cache, which also keeps them on disk across runs).
Only valid when a sample's input is the same every epoch (no random augmentation).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from kdkit.adapters import attach_adapters, example_inputs
from kdkit.lm.vocab import check_model_vocabularies
from kdkit.losses.token_divergence import TokenDivergence
from kdkit.schemes.plan import PlanInputs, SchemePlan
from kdkit.schemes.registry import SchemeOptions
from kdkit.taps import Taps
from kdkit.terms import LossTerm, active_terms, tapped_paths
from kdkit.trainer.step import Scheme
from kdkit.trainer.teacher_cache import TeacherCache, ValidationOutputs


class OfflineDistillation(Scheme):
    def __init__(
        self, student: nn.Module, teacher: nn.Module, terms: Sequence[LossTerm], cache_size: int | None = None,
        example: Tensor | None = None,
    ) -> None:
        """`example`: a few training inputs; when given, adapters are attached at once (see attach_adapters)."""
        super().__init__(student)
        self.terms = list(terms)
        # a token divergence compares the two models id by id: one vocabulary, checked before anything trains
        if any(isinstance(getattr(t, "loss", None), TokenDivergence) for t in self.terms):
            check_model_vocabularies(teacher, student)
        self.teacher = teacher.eval().requires_grad_(False)
        self.extras.extend(self.terms)  # adapters inside terms train with the student
        student_paths, teacher_paths = tapped_paths(self.terms)
        self.student_taps = Taps(student, student_paths)
        self.teacher_taps = Taps(teacher, teacher_paths)
        self.cache: TeacherCache | None = TeacherCache(cache_size) if cache_size else None
        # fixed outputs on the training data mean fixed validation logits too: validate computes them once
        self.val_teacher = ValidationOutputs() if cache_size else None
        if example is not None:
            self.attach_adapters(example)

    def attach_adapters(self, example: Tensor) -> list[str]:
        """Create the adapters of terms whose student and teacher features differ in shape (e.g. FitNets), by one
        eval-mode forward of both models on `example`. Call before `fit`, which builds the optimiser."""
        return attach_adapters(self.student, self.teacher, self.terms, example)

    def to(self, device: torch.device) -> OfflineDistillation:
        super().to(device)
        self.teacher.to(device)
        if self.cache is not None:
            self.cache.to(device)
        return self

    @torch.no_grad()
    def compute_teacher_outputs(self, x: Tensor) -> dict[str, Tensor]:
        """The teacher's logits and tapped features for `x` (subclasses with several teachers override this)."""
        self.teacher.eval()
        return self.teacher_taps(x)

    def live_teacher_outputs(self, x: Tensor) -> dict[str, Tensor]:
        """compute_teacher_outputs under inference_mode (no autograd bookkeeping at all), copied outside it: a loss
        may save its target for backward, which an inference tensor cannot be."""
        with torch.inference_mode():
            out = self.compute_teacher_outputs(x)
        return {k: v.clone() for k, v in out.items()}

    def teacher_outputs(self, x: Tensor, index: Tensor | None = None) -> dict[str, Tensor]:
        """The teacher's outputs for `x`, from the per-sample cache where there is one."""
        if self.cache is None or index is None:
            return self.live_teacher_outputs(x)
        cached = self.cache.get(index)
        if cached is None:
            start = time.perf_counter()
            cached = self.live_teacher_outputs(x)
            self.cache.build_seconds += time.perf_counter() - start
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
        return self.student(x), self.eval_teacher_logits(x)

    @torch.inference_mode()
    def eval_teacher_logits(self, x: Tensor) -> Tensor:
        """The teacher's logits for validation metrics (agreement, predictive KL)."""
        self.teacher.eval()
        return self.teacher(x)

    def resume_state(self) -> dict[str, Tensor]:
        """The teacher cache, checkpointed by fit, so a resumed run reuses the same teacher outputs (not once a
        persisted cache is on disk: the resumed run reads it from there)."""
        if self.cache is None or not self.cache.restorable():
            return {}
        stored = {f"cache.{k}": v for k, v in self.cache.store.items()}
        return {"filled": self.cache.filled.to(torch.uint8), **stored}

    def load_resume_state(self, state: dict[str, Tensor]) -> None:
        if self.cache is None or "filled" not in state:
            return
        device = next(self.teacher.parameters(), torch.empty(0)).device  # fit has moved the teacher by now
        self.cache.filled, self.cache.complete = state["filled"].bool(), False
        self.cache.store = {k.removeprefix("cache."): v.to(device) for k, v in state.items() if k != "filled"}

    def close(self) -> None:
        """Remove the forward hooks from both models."""
        self.student_taps.remove()
        self.teacher_taps.remove()


class OfflineOptions(SchemeOptions):
    """offline: the trained teacher teaches the student (Hinton et al. 2015, and every loss term of kdkit.losses)."""

    name: Literal["offline"] = "offline"
    distils_teacher_on_data = True
    cacheable = True
    replays_views = True
    starts_near_teacher = True
    logs_fidelity = True

    def plan(self, inputs: PlanInputs) -> SchemePlan:
        return OfflinePlan(self, inputs)


class OfflinePlan(SchemePlan):
    def scheme(self, distill_set: Dataset, run_dir: Path | None) -> OfflineDistillation:
        self.near_teacher()  # the teacher is trained by now; distillation not begun
        return OfflineDistillation(self.student, self.teacher, self.terms, cache_size=self.cache_size(distill_set),
                                   example=example_inputs(distill_set))  # creates adapters where shapes differ
