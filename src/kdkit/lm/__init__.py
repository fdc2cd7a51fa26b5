"""Low-level language-model parts, below the schemes and the data sources: generation, metrics, the teacher's top-k
logit cache, the vocabulary check, the token encoding of prompt/answer rows (dataset), the alignment of two
tokenizations (cross_tokenizer) and Hugging Face's Trainer (hf_trainer). LM configs, the three-row pipeline, the run
directory and the commands are the language-model family (kdkit.families.lm); models live in kdkit.models.lm, data in
kdkit.data.lm, losses in kdkit.losses (forward_kl, reverse_kl, jsd, tv), schemes in kdkit.schemes (on_policy,
sequence_level, topk_cache).

Names are imported on first use (PEP 562), so that reading an LM config does not load the generation and cache
code."""

from __future__ import annotations

import importlib
from typing import Any

# imported now: the function `generate` must win over the submodule of the same name, which importing
# kdkit.lm.generate later would otherwise leave in its place (only torch is loaded by it)
from kdkit.lm.generate import Generated, generate, pad_prompts

_EXPORTS: dict[str, str] = {
    "CacheInfo": "cache", "TopKCache": "cache", "build_topk_cache": "cache", "topk_tail_divergence": "cache",
    "exact_match": "metrics", "lm_report": "metrics", "lm_row": "metrics",
    "check_same_vocabulary": "vocab", "aligned_positions": "cross_tokenizer", "encode_cross": "cross_tokenizer",
    "DistillationTrainer": "hf_trainer", "distillation_loss": "hf_trainer",  # transformers loaded on first use
}
__all__ = ["CacheInfo", "DistillationTrainer", "Generated", "TopKCache", "aligned_positions", "build_topk_cache",
           "check_same_vocabulary", "distillation_loss", "encode_cross", "exact_match", "generate", "lm_report",
           "lm_row", "pad_prompts", "topk_tail_divergence"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kdkit.lm' has no attribute '{name}'")
    return getattr(importlib.import_module(f"kdkit.lm.{module}"), name)
