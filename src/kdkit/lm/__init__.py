"""Language-model distillation: generation, metrics, the teacher's top-k logit cache, the vocabulary check, LM
configs (`kdkit train`), the run directory and the `kdkit demo --task lm` pipeline. Models live in
kdkit.models.lm, data in kdkit.data.lm, losses in kdkit.losses (forward_kl, reverse_kl, jsd, tv), schemes in
kdkit.schemes (on_policy, sequence_level, topk_cache).

Names are imported on first use (PEP 562), so that reading an LM config (kdkit.lm.config) does not load the
generation and cache code."""

from __future__ import annotations

import importlib
from typing import Any

# imported now: the function `generate` must win over the submodule of the same name, which importing
# kdkit.lm.generate later would otherwise leave in its place (only torch is loaded by it)
from kdkit.lm.generate import Generated, generate, pad_prompts

_EXPORTS: dict[str, str] = {
    "CacheInfo": "cache", "TopKCache": "cache", "build_topk_cache": "cache", "topk_tail_divergence": "cache",
    "exact_match": "metrics", "lm_report": "metrics", "lm_row": "metrics",
    "check_same_vocabulary": "vocab",
}
__all__ = ["CacheInfo", "Generated", "TopKCache", "build_topk_cache", "check_same_vocabulary", "exact_match",
           "generate", "lm_report", "lm_row", "pad_prompts", "topk_tail_divergence"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kdkit.lm' has no attribute '{name}'")
    return getattr(importlib.import_module(f"kdkit.lm.{module}"), name)
