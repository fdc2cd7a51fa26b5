"""Training schemes: who teaches whom. One file per scheme holds its options (a ``SchemeOptions`` subclass, found
by kdkit.schemes.registry), its plan (kdkit.schemes.plan) and what trains:

- step schemes (a ``kdkit.trainer.step.Scheme``: offline, mutual, self_distill, multi_teacher, on_policy, topk_cache,
  cross_tokenizer), whose ``losses`` the trainer calls every batch;
- orchestrating schemes (assistants, born_again, data_free, sequence_level), which call the trainer several times.

Both call kdkit.trainer.loop; the trainer sees only kdkit.trainer.step, so the import graph reads one way. The names
below are imported on first use (PEP 562): ``import kdkit.schemes`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "Scheme": "kdkit.trainer.step", "Supervised": "supervised", "OfflineDistillation": "offline",
    "MutualLearning": "mutual",
    "SelfDistillation": "self_distill", "MultiTeacherDistillation": "multi_teacher",
    "OnPolicyDistillation": "on_policy", "TopKCacheDistillation": "topk_cache", "ULDDistillation": "cross_tokenizer",
    "distill_through_assistants": "assistants", "distill_born_again": "born_again",
    "SyntheticData": "data_free", "distill_data_free": "data_free", "synthesize": "data_free",
    "distill_sequence_level": "sequence_level", "teacher_outputs": "sequence_level",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kdkit.schemes' has no attribute '{name}'")
    return getattr(importlib.import_module(module if "." in module else f"kdkit.schemes.{module}"), name)
