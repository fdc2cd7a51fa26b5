"""On-policy distillation of a language model (Agarwal et al. 2024, "On-Policy Distillation of Language Models:
Learning from Self-Generated Mistakes", GKD).

At each training step, with probability lambda (drawn from the scheme's own seeded generator) the batch is
on-policy: the student samples a continuation of every prompt (softmax(logits / sample_temperature), up to the
length of the data's longest response, or max_new_tokens), and the teacher scores those sequences token by
token. Otherwise the batch is the data's own responses (off-policy, supervised KD). Either way:

    L = weight * mean_{generated / response tokens} D(p_t(. | y_<n, x) || p_s(. | y_<n, x))  [+ ce_weight * CE on
        off-policy batches]

with D a token divergence (default JSD(0.5), as GKD recommends trying several). No gradient flows through the
sampling. The same seed gives the same coin flips and the same samples (sampling runs on the CPU generator).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.utils.data import Dataset

from kdkit.errors import ConfigError
from kdkit.labels import UNLABELLED
from kdkit.lm.generate import generate
from kdkit.lm.vocab import check_model_vocabularies
from kdkit.losses.kd import hard_label_ce
from kdkit.losses.token_divergence import TokenDivergence
from kdkit.schemes.lm_common import (
    LMSchemeOptions,
    build_divergence,
    divergence_terms,
    prompt_lengths,
)
from kdkit.schemes.lm_plan import LMPlan, LMPlanInputs
from kdkit.trainer.step import Scheme


class OnPolicyDistillation(Scheme):
    def __init__(self, student: nn.Module, teacher: nn.Module, divergence: str | TokenDivergence = "jsd",
                 lam: float = 0.5, eos_id: int | None = None, pad_id: int = 0, sample_temperature: float = 1.0,
                 max_new_tokens: int | None = None, weight: float = 1.0, ce_weight: float = 0.0, seed: int = 0,
                 **options: Any) -> None:
        super().__init__(student)
        if not 0.0 <= lam <= 1.0:
            raise ConfigError(f"on-policy lambda must be in [0, 1], got {lam}")
        if sample_temperature <= 0:
            raise ConfigError(f"sample_temperature must be > 0, got {sample_temperature}")
        check_model_vocabularies(teacher, student)  # hf_lm: models carry tokenizers; one line if they differ
        self.teacher = teacher.eval().requires_grad_(False)
        self.divergence = build_divergence(divergence, **options)
        self.lam, self.eos_id, self.pad_id = float(lam), eos_id, pad_id
        self.sample_temperature, self.max_new_tokens = float(sample_temperature), max_new_tokens
        self.weight, self.ce_weight = float(weight), float(ce_weight)
        self.generator = torch.Generator().manual_seed(seed)
        self.on_policy_steps = self.steps = 0

    def to(self, device: torch.device) -> OnPolicyDistillation:
        super().to(device)
        self.teacher.to(device)
        return self

    def resume_state(self) -> dict[str, Tensor]:
        """The coin-flip and sampling generator and the step counts, checkpointed by fit: a resumed run draws the
        same on-policy steps and samples as one never interrupted."""
        return {"generator": self.generator.get_state(), "steps": torch.tensor(self.steps),
                "on_policy_steps": torch.tensor(self.on_policy_steps)}

    def load_resume_state(self, state: dict[str, Tensor]) -> None:
        if "generator" not in state:
            return
        self.generator.set_state(state["generator"].to(torch.uint8).cpu())
        self.steps, self.on_policy_steps = int(state["steps"]), int(state["on_policy_steps"])

    @torch.no_grad()
    def sample(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Student samples after each row's prompt; returns (x', y') of x's shape, labelled on the sampled tokens
        only (so the divergence counts them, and neither prompt nor padding)."""
        length = x.shape[1]
        plen = prompt_lengths(y)
        want = int((y != UNLABELLED).sum(1).max()) if self.max_new_tokens is None else self.max_new_tokens
        max_new = max(1, min(want, length + 1 - int(plen.max())))
        was_training = self.student.training
        out = generate(self.student, x, plen, max_new, eos_id=self.eos_id, pad_id=self.pad_id, greedy=False,
                       temperature=self.sample_temperature, generator=self.generator)
        self.student.train(was_training)
        seq = torch.full((x.shape[0], length + 1), self.pad_id, dtype=torch.long, device=x.device)
        width = min(out.ids.shape[1], length + 1)
        seq[:, :width] = out.ids[:, :width]
        new_x, new_y = seq[:, :-1].clone(), torch.full_like(x, UNLABELLED)
        cols = torch.arange(length, device=x.device)[None, :]
        # label position l holds token l + 1: generated tokens sit at plen .. plen + lengths - 1
        labelled = (cols >= (plen - 1)[:, None]) & (cols < (plen - 1 + out.lengths)[:, None])
        new_y[labelled] = seq[:, 1:][labelled]
        return new_x, new_y

    def losses(self, x: Tensor, y: Tensor | None, epoch: int, index: Tensor | None = None):
        if y is None:
            raise ConfigError("on-policy distillation needs labels that mark the prompts (-1 on the prompt)")
        self.steps += 1
        on_policy = bool(torch.rand((), generator=self.generator) < self.lam)
        self.teacher.eval()
        if on_policy:
            self.on_policy_steps += 1
            seq_x, seq_y = self.sample(x, y)
            with torch.no_grad():
                data_logits = self.student(x)  # for the trainer's accuracy on the data's own labels
        else:
            seq_x, seq_y = x, y
        logits = self.student(seq_x)
        with torch.no_grad():
            teacher_logits = self.teacher(seq_x)
        div = self.divergence(logits, teacher_logits, seq_y)
        name = self.divergence.name
        weighted, raw = {name: self.weight * div}, {name: div.detach()}
        if self.ce_weight:  # CE on the data's responses only: on-policy samples are not ground truth
            ce = hard_label_ce(logits, y) if not on_policy else logits.sum() * 0.0
            weighted["ce"], raw["ce"] = self.ce_weight * ce, ce.detach()
        return weighted, raw, (data_logits if on_policy else logits)

    @torch.no_grad()
    def eval_logits(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        self.teacher.eval()
        return self.student(x), self.teacher(x)


class OnPolicyOptions(LMSchemeOptions):
    """on_policy (language models, GKD): in a share `lam` of the steps the student samples its answers and the
    teacher scores them; distill.losses: one token divergence, optionally ce."""

    name: Literal["on_policy"] = "on_policy"
    lam: float = Field(0.5, ge=0, le=1, description="share of steps on the student's own samples")
    sample_temperature: float = Field(1.0, gt=0, description="the student's sampling temperature")
    max_new_tokens: int | None = Field(None, ge=1, description="longest sample (default: longest answer)")

    def tune_space(self, losses: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {**super().tune_space(losses), "distill.scheme.lam": {"low": 0.0, "high": 1.0}}

    def check_config(self, losses: list[dict[str, Any]]) -> None:
        divergence_terms(losses, self.name)

    def plan(self, inputs: LMPlanInputs) -> LMPlan:
        return OnPolicyPlan(self, inputs)


class OnPolicyPlan(LMPlan):
    """GKD on the labelled prompts: the step samples the student's own answers in a share `lam` of the steps."""

    options: OnPolicyOptions

    def indexed(self) -> bool:
        return False

    def scheme(self, train_set: Dataset) -> OnPolicyDistillation:
        i, o = self.inputs, self.options
        div, ce_weight = divergence_terms(i.losses, o.name)
        name, weight = div.pop("name"), float(div.pop("weight", 1.0))
        return OnPolicyDistillation(i.student, i.teacher, name, lam=o.lam, eos_id=i.eos, pad_id=i.pad,
                                    sample_temperature=o.sample_temperature, max_new_tokens=o.max_new_tokens,
                                    weight=weight, ce_weight=ce_weight, seed=i.seed, **div)

    def finish(self, scheme: Scheme) -> None:
        assert isinstance(scheme, OnPolicyDistillation)
        self.extra.update(on_policy_steps=scheme.on_policy_steps, steps=scheme.steps)


__all__ = ["OnPolicyDistillation", "OnPolicyOptions", "OnPolicyPlan"]
