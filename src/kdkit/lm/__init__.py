"""Language-model distillation: generation, metrics, the teacher's top-k logit cache, the vocabulary check and the
`kdkit demo --task lm` pipeline. Models live in kdkit.models.lm, data in kdkit.data.lm, losses in kdkit.losses
(forward_kl, reverse_kl, jsd, tv), schemes in kdkit.schemes (on_policy, sequence_level, topk_cache)."""

from kdkit.lm.cache import CacheInfo, TopKCache, build_topk_cache, topk_tail_divergence
from kdkit.lm.generate import Generated, generate, pad_prompts
from kdkit.lm.metrics import exact_match, lm_report, lm_row
from kdkit.lm.vocab import check_same_vocabulary

__all__ = ["CacheInfo", "Generated", "TopKCache", "build_topk_cache", "check_same_vocabulary", "exact_match",
           "generate", "lm_report", "lm_row", "pad_prompts", "topk_tail_divergence"]
