"""Training schemes: who teaches whom in a step.

Step schemes (a ``Scheme``: offline, mutual, self, multi-teacher, ...) are called by the trainer; orchestrating
schemes (assistants, born-again, data-free, sequence-level) call the trainer. The names below are imported on first
use (PEP 562) so that ``kdkit.trainer`` can import ``kdkit.schemes.base`` without pulling in the orchestrators,
which import the trainer themselves.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "Scheme": "base", "Supervised": "supervised", "OfflineDistillation": "offline", "MutualLearning": "mutual",
    "SelfDistillation": "self_distill", "MultiTeacherDistillation": "multi_teacher",
    "OnPolicyDistillation": "on_policy", "TopKCacheDistillation": "topk_cache",
    "distill_through_assistants": "assistants", "distill_born_again": "born_again",
    "SyntheticData": "data_free", "distill_data_free": "data_free", "synthesize": "data_free",
    "distill_sequence_level": "sequence_level", "teacher_outputs": "sequence_level",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kdkit.schemes' has no attribute '{name}'")
    return getattr(importlib.import_module(f"kdkit.schemes.{module}"), name)
