"""Teacher-near initialisation (Stanton, Izmailov, Kirichenko, Alemi & Wilson, NeurIPS 2021, "Does Knowledge
Distillation Really Work?").

A student of the teacher's own architecture starts on the line between a random initialisation and the trained
teacher, in place:

    theta_student = lam * theta_teacher + (1 - lam) * theta_random,    0 <= lam <= 1

for every parameter and floating-point buffer (BatchNorm running mean and variance are interpolated too); integer
buffers such as BatchNorm's ``num_batches_tracked`` stay the student's. The paper uses it to study how far the
student's starting point limits how closely distillation lets it match its teacher.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from kdkit.errors import ConfigError, ModelError


def _tensors(model: nn.Module) -> dict[str, Tensor]:
    # every name, shared ones included (remove_duplicate=False), so two models compare name by name
    return {**dict(model.named_parameters(remove_duplicate=False)),
            **dict(model.named_buffers(remove_duplicate=False))}


def architecture_difference(student: nn.Module, teacher: nn.Module) -> str | None:
    """None when both models have the same parameter and buffer names with the same shapes, else a phrase naming
    the first difference (in the student's order), e.g. "'0.weight' has shape (16, 8) in the student and (32, 8)
    in the teacher"."""
    s, t = _tensors(student), _tensors(teacher)
    for key, value in s.items():
        if key not in t:
            return f"'{key}' is in the student but not in the teacher"
        if value.shape != t[key].shape:
            return (f"'{key}' has shape {tuple(value.shape)} in the student and {tuple(t[key].shape)} in the "
                    "teacher")
    extra = next((key for key in t if key not in s), None)
    return None if extra is None else f"'{extra}' is in the teacher but not in the student"


def check_same_architecture(student: nn.Module, teacher: nn.Module) -> None:
    """ModelError (one line, naming the first differing key) unless the two models have the same state layout."""
    difference = architecture_difference(student, teacher)
    if difference is not None:
        raise ModelError(f"teacher-near initialisation needs a student with the teacher's architecture; {difference}")


def check_lam(lam: float) -> float:
    """`lam` as a float, or a one-line ConfigError (a ValueError) unless 0 <= lam <= 1."""
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or not 0 <= lam <= 1:
        raise ConfigError(f"teacher-near initialisation needs 0 <= lam <= 1 (the teacher's share), got {lam!r}")
    return float(lam)


@torch.no_grad()
def teacher_near_init(student: nn.Module, teacher: nn.Module, lam: float) -> nn.Module:
    """Move `student` (at its random initialisation) to ``lam * teacher + (1 - lam) * student``, in place, and
    return it. lam = 0 leaves the student unchanged, lam = 1 makes it a copy of the teacher. The teacher is not
    modified; its tensors may live on another device."""
    lam = check_lam(lam)
    check_same_architecture(student, teacher)
    teacher_tensors = _tensors(teacher)
    # named_parameters/named_buffers skip repeated (tied) tensors here: each one is interpolated exactly once
    for key, value in [*student.named_parameters(), *student.named_buffers()]:
        if not value.is_floating_point():
            continue  # counters such as num_batches_tracked: the student's own
        target = teacher_tensors[key].to(device=value.device, dtype=value.dtype)
        # lerp is exact at both ends: lam = 0 gives the student's value, lam = 1 the teacher's
        value.lerp_(target, lam)
    return student
