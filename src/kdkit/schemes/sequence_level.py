"""Sequence-level knowledge distillation (Kim & Rush 2016, "Sequence-Level Knowledge Distillation"): the teacher
writes a response to every training prompt (greedy, their beam search of width 1, or sampled at a temperature),
and the student is trained on those responses with plain cross-entropy, as if they were the data:

    L = - sum_n log p_s(y^_n | y^_<n, x),   y^ = teacher's output for prompt x

Word-level KD can be added on top (their "Seq-Inter" / combined variants) by distilling with OfflineDistillation on
the returned dataset instead of Supervised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader

from kdkit.data.loaders import make_loader
from kdkit.errors import DataError
from kdkit.lm.dataset import LMDataset, concat, encode_pairs
from kdkit.lm.generate import generate, pad_prompts
from kdkit.measure.cost import model_device
from kdkit.schemes.lm_common import LMSchemeOptions
from kdkit.schemes.lm_plan import LMPlan, LMPlanInputs
from kdkit.schemes.supervised import Supervised
from kdkit.trainer.loop import FitResult, fit
from kdkit.trainer.settings import TrainSettings


@torch.no_grad()
def teacher_outputs(teacher: nn.Module, data: LMDataset, eos_id: int, pad_id: int = 0, greedy: bool = True,
                    temperature: float = 1.0, seed: int = 0, batch_size: int = 256,
                    max_new_tokens: int | None = None) -> LMDataset:
    """A copy of a prompt/response dataset whose responses are the teacher's generations (eos stripped; a
    response is cut to fit the sequence length)."""
    if data.prompts is None:
        raise DataError("sequence-level KD needs prompt/response data: the teacher answers the prompts")
    seq_len = data.x.shape[1]
    device = model_device(teacher)
    generator = torch.Generator().manual_seed(seed)
    longest = max(len(r) for r in data.responses or [[0]]) + 1
    responses: list[list[int]] = []
    for start in range(0, len(data), batch_size):
        prompts = data.prompts[start:start + batch_size]
        ids, lengths = pad_prompts(prompts, pad_id)
        out = generate(teacher, ids.to(device), lengths.to(device), max_new_tokens or longest, eos_id=eos_id,
                       pad_id=pad_id, greedy=greedy, temperature=temperature, generator=generator)
        for row, prompt in enumerate(prompts):
            tokens = out.new[row, : int(out.lengths[row])].tolist()
            if tokens and tokens[-1] == eos_id:
                tokens = tokens[:-1]
            responses.append(tokens[: max(0, seq_len - len(prompt))])
    return encode_pairs(data.prompts, responses, seq_len, eos_id, pad_id)


def distill_sequence_level(student: nn.Module, teacher: nn.Module, data: LMDataset, val_loader: DataLoader | None,
                           settings: TrainSettings, eos_id: int, pad_id: int = 0, greedy: bool = True,
                           temperature: float = 1.0, run_dir: str | Path | None = None,
                           name: str = "student_seqkd") -> tuple[FitResult, LMDataset]:
    """Generate the teacher's responses to `data`'s prompts (seeded by settings.seed), then fit the student on
    them; returns the fit result and the generated dataset."""
    generated = teacher_outputs(teacher, data, eos_id, pad_id, greedy, temperature, settings.seed)
    loader = make_loader(generated, settings.batch_size, shuffle=True, seed=settings.seed)
    return fit(Supervised(student), loader, val_loader, settings, run_dir=run_dir, name=name), generated


class SequenceLevelOptions(LMSchemeOptions):
    """sequence_level (language models): the teacher answers the `data.n_transfer` extra prompts, greedily or
    sampled at `temperature`; the student learns the labelled pairs (with their own answers) and the teacher's
    answers with distill.losses. A config without transfer prompts is refused (it would be offline)."""

    name: Literal["sequence_level"] = "sequence_level"
    greedy: bool = Field(True, description="the teacher answers greedily (else samples)")
    temperature: float = Field(1.0, gt=0, description="sampling temperature when not greedy")
    writes_answers = True

    def plan(self, inputs: LMPlanInputs) -> LMPlan:
        return SequenceLevelPlan(self, inputs)


class SequenceLevelPlan(LMPlan):
    """Offline distillation on the labelled pairs plus the teacher's answers to the transfer prompts (Kim & Rush
    2016); the labelled pairs keep their own answers."""

    options: SequenceLevelOptions

    def train_set(self) -> LMDataset:
        i = self.inputs
        if i.transfer is None:
            return i.data.train
        written = teacher_outputs(i.teacher.to(i.device), i.transfer, i.eos, i.pad, greedy=self.options.greedy,
                                  temperature=self.options.temperature, seed=i.seed)
        self.extra["teacher_written"] = len(i.transfer)
        return concat(i.data.train, encode_pairs(written.prompts or [], written.responses or [], i.data.seq_len,
                                                 i.eos, i.pad))


__all__ = ["SequenceLevelOptions", "SequenceLevelPlan", "distill_sequence_level", "teacher_outputs"]
