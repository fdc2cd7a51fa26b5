"""What the language-model schemes share: their options' base, the divergence term by name and the prompt boundary
of a batch. A scheme's options plan its training (kdkit.schemes.lm_plan: offline unless the scheme says otherwise);
the LM family builds the plan's inputs from its config and names no scheme, so adding one is adding its file:

    plan = cfg.distill.scheme.plan(LMPlanInputs(student, teacher, losses, data, transfer, settings, run_dir, ...))
    record = plan.distill()          # what the run records about the distillation (results.json "training")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from kdkit.errors import ConfigError
from kdkit.losses import build_loss
from kdkit.losses.token_divergence import TokenDivergence
from kdkit.schemes.registry import LM, SchemeOptions

if TYPE_CHECKING:
    from kdkit.schemes.lm_plan import LMPlan, LMPlanInputs


def build_divergence(divergence: str | TokenDivergence, **options: Any) -> TokenDivergence:
    """forward_kl, reverse_kl, jsd or tv by name (options such as T, beta, chunk_size), or an instance."""
    loss = divergence if isinstance(divergence, TokenDivergence) else build_loss(divergence, **options)
    if not isinstance(loss, TokenDivergence):
        raise ConfigError(f"a language-model scheme needs a token divergence (forward_kl, reverse_kl, jsd, tv), "
                          f"not '{divergence}'")
    return loss


def prompt_lengths(y: Tensor) -> Tensor:
    """Per row, the number of tokens before the first predicted one: the first labelled position + 1 (labels are
    the inputs shifted by one). A row without labels counts as all prompt (its length)."""
    labelled = y >= 0
    first = torch.where(labelled.any(1), labelled.float().argmax(1), torch.full_like(y[:, 0], y.shape[1] - 1))
    return first + 1


DIVERGENCES = ("forward_kl", "reverse_kl", "jsd", "tv")


def divergence_terms(losses: list[dict[str, Any]], scheme: str) -> tuple[dict[str, Any], float]:
    """For a scheme that compares one token divergence (on_policy, topk_cache): (that term, the ce weight or 0)
    from distill.losses; ConfigError when the terms are anything else."""
    names = [str(t.get("name")) for t in losses]
    divs = [t for t in losses if t.get("name") in DIVERGENCES]
    others = [n for n in names if n not in (*DIVERGENCES, "ce")]
    if len(divs) != 1 or others or names.count("ce") > 1:
        raise ConfigError(f"config error at distill.losses: scheme '{scheme}' takes one token divergence "
                          f"({', '.join(DIVERGENCES)}) and optionally ce, e.g. [{{name: jsd, beta: 0.5}}, {{name: ce, "
                          f"weight: 0.5}}]; got {names}")
    ce = [t for t in losses if t.get("name") == "ce"]
    return dict(divs[0]), float(ce[0].get("weight", 1.0)) if ce else 0.0


class LMSchemeOptions(SchemeOptions):
    """Base of the language-model schemes: their family, what `kdkit tune` searches by default, their config checks
    and their plan (offline distillation unless a scheme overrides :meth:`plan`)."""

    family = LM

    def check_config(self, losses: list[dict[str, Any]]) -> None:
        """ConfigError when this scheme cannot train with these distill.losses (by default any terms do)."""

    def transfer_pool(self, transfer: int) -> int:
        """How many of the data's `transfer` prompts the student learns from (their answers written by the
        teacher); 0 unless the scheme writes answers."""
        return transfer if type(self).writes_answers else 0

    def plan(self, inputs: LMPlanInputs) -> LMPlan:
        from kdkit.schemes.lm_plan import LMPlan  # torch and the trainer: loaded when a run trains, not by the config

        return LMPlan(self, inputs)

    def tune_space(self, losses: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The weight of the token divergence (against ce, when the terms have one)."""
        names = [str(t.get("name")) for t in losses]
        divergence = next((n for n in names if n in DIVERGENCES), None)
        if divergence is None:
            return {}
        return {f"distill.losses.{divergence}.weight": {"low": 0.1, "high": 10.0, "log": True}}


class LMOfflineOptions(LMSchemeOptions):
    """offline (language models): token-level KD on the labelled data with distill.losses (e.g. ce + forward_kl)."""

    name: Literal["offline"] = "offline"


__all__ = ["DIVERGENCES", "LMOfflineOptions", "LMSchemeOptions", "build_divergence", "divergence_terms",
           "prompt_lengths"]
