"""Self-distillation from a "mean teacher": an exponential moving average (EMA) of the student's own weights
(Tarvainen & Valpola, NeurIPS 2017, "Mean teachers are better role models"), used as the distillation target.

After every optimiser step (applied at the start of the next :meth:`SelfDistillation.losses` call)

    theta_teacher <- decay * theta_teacher + (1 - decay) * theta_student      (parameters)
    buffers_teacher <- buffers_student                                          (e.g. BatchNorm statistics)

and the student minimises the loss terms (default: Hinton KD, alpha * CE + (1 - alpha) * T^2 * KL(p_t || p_s),
T = 4, alpha = 0.5) with the teacher's logits as targets. The teacher starts as a copy of the student, is frozen
(requires_grad=False) and runs in eval mode under no_grad; it is not optimised, so it is not in ``extras``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.utils.data import Dataset

from kdkit.errors import ConfigError
from kdkit.schemes.plan import PlanInputs, SchemePlan
from kdkit.schemes.registry import SchemeOptions
from kdkit.taps import LOGITS, Taps
from kdkit.terms import LossTerm, active_terms, build_terms, key_paths
from kdkit.trainer.step import Scheme


class SelfDistillation(Scheme):
    """The student distils from the EMA of its own weights.

    ``warmup_epochs``: during epochs ``0 .. warmup_epochs - 1`` the teacher simply copies the student after each
    step (decay 0), so it does not stay anchored to the random initial weights that a high decay keeps for
    thousands of steps; the EMA with ``decay`` starts afterwards. :meth:`eval_logits` returns the teacher's logits
    too, so validation reports the student's agreement with its mean teacher.
    """

    def __init__(
        self, student: nn.Module, terms: Sequence[LossTerm] | None = None, decay: float = 0.999,
        warmup_epochs: int = 0,
    ) -> None:
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"SelfDistillation decay must be in (0, 1) (e.g. 0.999), got {decay}")
        if warmup_epochs < 0:
            raise ConfigError(f"SelfDistillation warmup_epochs must be >= 0, got {warmup_epochs}")
        terms = build_terms([{"name": "kd", "alpha": 0.5}]) if terms is None else list(terms)
        if not terms:
            raise ConfigError("SelfDistillation got an empty list of loss terms; give e.g. [{name: kd, T: 4}]")
        for term in terms:
            paths = set(key_paths(term.student_key))
            if term.uses_teacher:
                paths |= set(key_paths(term.teacher_key))
            if paths != {LOGITS}:
                other = ", ".join(sorted(paths - {LOGITS}))
                raise ConfigError(
                    f"loss term '{term.name}' reads {other}; SelfDistillation compares logits only (no feature paths)"
                )
        super().__init__(student)
        # copied before any hook is attached, so the teacher carries none
        self.teacher = copy.deepcopy(student).eval().requires_grad_(False)
        self.terms = terms
        self.extras.extend(terms)  # a term's own trainable parts (if any) train with the student
        self.decay, self.warmup_epochs = float(decay), int(warmup_epochs)
        self.steps = 0  # losses() calls so far; each one after the first follows an optimiser step
        self._student_taps, self._teacher_taps = Taps(student), Taps(self.teacher)

    def to(self, device: torch.device) -> SelfDistillation:
        super().to(device)
        self.teacher.to(device)
        return self

    @torch.no_grad()
    def update_teacher(self, decay: float | None = None) -> None:
        """One EMA step towards the student's current weights; buffers are copied, not averaged."""
        decay = self.decay if decay is None else decay
        t_params, s_params = list(self.teacher.parameters()), list(self.student.parameters())
        for t, s in zip(t_params, s_params, strict=True):
            # written as decay * t + (1 - decay) * s literally (no fused add), so the result is reproducible
            t.mul_(decay).add_(s.detach() * (1.0 - decay))
        for t, s in zip(self.teacher.buffers(), self.student.buffers(), strict=True):
            t.copy_(s)

    def losses(self, x: Tensor, y: Tensor | None, epoch: int, index: Tensor | None = None):
        # fit has no post-step hook, so the previous step is folded in here. The first step copies the student as
        # it is now: weights loaded after construction, or broadcast from rank 0 by DDP, then count, not the
        # weights the student had when the scheme was built
        self.update_teacher(0.0 if self.steps == 0 or epoch < self.warmup_epochs else self.decay)
        self.steps += 1
        terms = active_terms(self.terms, epoch)  # terms past their until_epoch are neither computed nor logged
        teacher_out = None
        if any(t.uses_teacher for t in terms):  # the EMA above still follows the student either way
            with torch.no_grad():
                self.teacher.eval()  # even if the user or train() put it in train mode
                teacher_out = self._teacher_taps(x)
        student_out = self._student_taps(x)
        weighted, raw = {}, {}
        for term in terms:
            weighted[term.name], raw[term.name] = term(student_out, teacher_out, y, epoch)
        return weighted, raw, student_out[LOGITS]

    @torch.no_grad()
    def eval_logits(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        self.teacher.eval()
        return self.student(x), self.teacher(x)

    def resume_state(self) -> dict[str, Tensor]:
        """The EMA teacher and the step count, checkpointed by fit: without them a resumed run would restart the
        average from the student and end with other weights."""
        teacher = {f"teacher.{k}": v for k, v in self.teacher.state_dict().items()}
        return {**teacher, "steps": torch.tensor(self.steps, dtype=torch.long)}

    def load_resume_state(self, state: dict[str, Tensor]) -> None:
        if "steps" not in state:
            return
        self.teacher.load_state_dict({k.removeprefix("teacher."): v for k, v in state.items() if k != "steps"})
        self.steps = int(state["steps"])


class SelfDistillOptions(SchemeOptions):
    """self_distill: the student is taught by an EMA of its own weights (a mean teacher); the trained teacher is
    only the reference row."""

    name: Literal["self_distill"] = "self_distill"
    decay: float = Field(0.999, gt=0, lt=1, description="EMA decay of the teacher's weights")
    warmup_epochs: int = Field(0, ge=0, description="epochs in which the teacher copies the student")

    def plan(self, inputs: PlanInputs) -> SchemePlan:
        return SelfDistillPlan(self, inputs)


class SelfDistillPlan(SchemePlan):
    options: SelfDistillOptions

    def __init__(self, options: SelfDistillOptions, inputs: PlanInputs) -> None:
        super().__init__(options, inputs)
        self._scheme = SelfDistillation(self.student, self.terms, options.decay, options.warmup_epochs)
        self.extra_models["ema_teacher"] = self._scheme.teacher

    def scheme(self, distill_set: Dataset, run_dir: Path | None) -> SelfDistillation:
        return self._scheme
