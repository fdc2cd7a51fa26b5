"""Distillation from a teacher's top-k logit cache (kdkit.lm.cache): the teacher is never run during training.

    L = ce_weight * CE(s, y) + weight * D_topk+tail(p_t || p_s)

over the labelled tokens, where D is forward_kl, reverse_kl, jsd or tv on the teacher's top k with its tail
estimated by `tail` (bucket, uniform or sampled; kdkit.lm.cache describes the three). The loader must yield
sample indices (wrap the dataset in kdkit.data.Indexed) in the order the cache was built from.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from torch import Tensor, nn
from torch.utils.data import Dataset

from kdkit.errors import ConfigError
from kdkit.lm.cache import TAILS, Tail, TopKCache, build_topk_cache, topk_tail_divergence
from kdkit.losses.kd import hard_label_ce
from kdkit.losses.token_divergence import TokenDivergence
from kdkit.run.rundir import RunDir
from kdkit.schemes.lm_common import LMSchemeOptions, build_divergence, divergence_terms
from kdkit.schemes.lm_plan import LMPlan, LMPlanInputs
from kdkit.trainer.step import Scheme


class TopKCacheDistillation(Scheme):
    def __init__(self, student: nn.Module, cache: TopKCache, divergence: str | TokenDivergence = "forward_kl",
                 weight: float = 1.0, ce_weight: float = 1.0, tail: Tail | None = None, **options: Any) -> None:
        """`tail`: bucket, uniform or sampled; None: sampled when the cache holds tail draws, else bucket."""
        super().__init__(student)
        tail = tail or ("sampled" if cache.tail_samples else "bucket")
        if tail not in TAILS:
            raise ConfigError(f"tail estimator must be one of {', '.join(TAILS)}, got {tail!r}")
        if tail == "sampled" and not cache.tail_samples:
            raise ConfigError(f"tail: sampled needs a cache built with tail_samples > 0; {cache.directory} has none")
        self.cache, self.weight, self.ce_weight, self.tail = cache, float(weight), float(ce_weight), tail
        self.divergence = build_divergence(divergence, **options)
        self.name = self.divergence.name

    def losses(self, x: Tensor, y: Tensor | None, epoch: int, index: Tensor | None = None):
        if index is None:
            raise ConfigError("the top-k cache is read by sample index; wrap the training set in kdkit.data.Indexed")
        logits = self.student(x)
        if logits.shape[-1] != self.cache.vocab_size:
            raise ConfigError(f"the cache was built for {self.cache.vocab_size} tokens but the student predicts "
                              f"{logits.shape[-1]}")
        logprobs, ids, tail = (c.to(logits.device) for c in self.cache.get(index))
        drawn = self.cache.samples(index) if self.tail == "sampled" else None
        samples = (drawn[0].to(logits.device), drawn[1].to(logits.device)) if drawn is not None else None
        div = topk_tail_divergence(self.divergence, logits, logprobs, ids, tail, y, tail=self.tail, samples=samples)
        weighted, raw = {self.name: self.weight * div}, {self.name: div.detach()}
        if self.ce_weight:
            ce = hard_label_ce(logits, y)
            weighted["ce"], raw["ce"] = self.ce_weight * ce, ce.detach()
        return weighted, raw, logits


class TopKCacheOptions(LMSchemeOptions):
    """topk_cache (language models): the teacher's top-`k` log-probabilities per token are written once under the
    run directory and read back by index; distill.losses: one token divergence at T = 1, optionally ce."""

    name: Literal["topk_cache"] = "topk_cache"
    k: int = Field(32, ge=1, description="log-probabilities kept per token")
    tail: Literal["bucket", "uniform", "sampled"] = Field(
        "sampled", description="how the teacher's mass outside its top k is compared: sampled from the teacher's "
        "tail (unbiased; needs tail_samples), one bucket (a lower bound) or spread evenly")
    tail_samples: int = Field(8, ge=0, description="ids drawn per token from the teacher's tail (tail: sampled)")
    shard_size: int = Field(4096, ge=1, description="rows per safetensors shard")

    def check_config(self, losses: list[dict[str, Any]]) -> None:
        div, _ = divergence_terms(losses, self.name)
        if float(div.get("T", 1.0)) != 1.0:
            raise ConfigError("config error at distill.losses: the top-k cache holds the teacher at temperature 1; "
                              "give T: 1 (or leave T out)")
        if self.tail == "sampled" and not self.tail_samples:
            raise ConfigError("config error at distill.scheme.tail_samples: tail: sampled draws ids from the "
                              "teacher's tail when the cache is built; give tail_samples >= 1 (e.g. 8) or tail: bucket")

    def plan(self, inputs: LMPlanInputs) -> LMPlan:
        return TopKCachePlan(self, inputs)


class TopKCachePlan(LMPlan):
    """Writes the teacher's top-k cache under the run directory once, then trains the student against it."""

    options: TopKCacheOptions

    def scheme(self, train_set: Dataset) -> TopKCacheDistillation:
        i, o = self.inputs, self.options
        div, ce_weight = divergence_terms(i.losses, o.name)
        name, weight = div.pop("name"), float(div.pop("weight", 1.0))
        div.pop("T", None)  # checked to be 1 by check_config: the cache holds the teacher at temperature 1
        info = build_topk_cache(i.teacher.to(i.device), train_set, RunDir(i.run_dir).teacher_topk, k=o.k,
                                shard_size=o.shard_size, tail_samples=o.tail_samples, seed=i.seed)
        self.extra["teacher_cache"] = {"k": info.k, "tail": o.tail, "tail_samples": info.tail_samples,
                                       "bytes": info.bytes, "build_seconds": info.seconds,
                                       "folder": str(info.directory)}
        return TopKCacheDistillation(i.student, TopKCache(info.directory), name, weight=weight, ce_weight=ce_weight,
                                     tail=o.tail, **div)

    def finish(self, scheme: Scheme) -> None:
        """Nothing to release: the cache's shards are read as the steps need them."""


__all__ = ["TopKCacheDistillation", "TopKCacheOptions", "TopKCachePlan"]
