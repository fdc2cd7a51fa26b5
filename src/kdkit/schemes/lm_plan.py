"""The plan of a language-model scheme: what it gets from the run (:class:`LMPlanInputs`, filled by
kdkit.families.lm.run from the config) and how it trains the distilled student (:class:`LMPlan`: offline, token-level
KD with distill.losses, unless a scheme's plan says otherwise)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn
from torch.utils.data import Dataset

from kdkit.data.loaders import EVAL_BATCH_SIZE, Indexed, make_loader
from kdkit.schemes.registry import SchemeOptions
from kdkit.trainer.loop import fit
from kdkit.trainer.settings import TrainSettings
from kdkit.trainer.step import Scheme

if TYPE_CHECKING:
    from kdkit.lm.dataset import LMDataset


class LMData(Protocol):
    """What a plan reads of the run's data (kdkit.data.lm.LMBundle: schemes import no data source)."""

    train: LMDataset
    val: LMDataset
    tokenizer: Any
    seq_len: int


@dataclass
class LMPlanInputs:
    """The language-model run as a scheme's plan sees it (filled by kdkit.families.lm.run, so no scheme reads the
    config itself)."""

    student: nn.Module
    teacher: nn.Module
    losses: list[dict[str, Any]]  # distill.losses, validated
    data: LMData
    transfer: LMDataset | None  # data.n_transfer prompts without answers, or None
    settings: TrainSettings  # the distilled student's
    run_dir: Path
    device: torch.device
    seed: int

    @property
    def eos(self) -> int:
        return self.data.tokenizer.eos_token_id

    @property
    def pad(self) -> int:
        pad = getattr(self.data.tokenizer, "pad_token_id", None)
        return self.eos if pad is None else pad


class LMPlan:
    """Trains the distilled student as one language-model scheme says: by default offline, token-level KD on
    :meth:`train_set` with distill.losses. Subclasses change the training set or return their own step scheme from
    :meth:`scheme`; :meth:`record` says what the run keeps about it."""

    name = "student_kd"  # the stage's name in metrics.jsonl and its checkpoints

    def __init__(self, options: SchemeOptions, inputs: LMPlanInputs) -> None:
        self.options, self.inputs = options, inputs
        self.extra: dict[str, Any] = {}  # what record() adds to {"scheme": name}

    def train_set(self) -> Dataset:
        return self.inputs.data.train

    def scheme(self, train_set: Dataset) -> Scheme:
        from kdkit.schemes.offline import OfflineDistillation
        from kdkit.terms import build_terms

        i = self.inputs
        return OfflineDistillation(i.student, i.teacher, build_terms(i.losses), cache_size=len(train_set))

    def indexed(self) -> bool:
        """Whether the step reads each row's index (a per-row teacher cache)."""
        return True

    def distill(self) -> dict[str, Any]:
        """Train the student; returns what the run records about it ({"scheme": name, ...})."""
        s, train_set = self.inputs.settings, self.train_set()
        scheme = self.scheme(train_set)
        rows = Indexed(train_set) if self.indexed() else train_set
        fit(scheme, make_loader(rows, s.batch_size, shuffle=True, seed=s.seed),
            make_loader(self.inputs.data.val, EVAL_BATCH_SIZE, shuffle=False), s, run_dir=self.inputs.run_dir,
            name=self.name)
        self.finish(scheme)
        return {"scheme": self.options.name, **self.extra}

    def finish(self, scheme: Scheme) -> None:
        """After training: release what the step holds and note what the run keeps (self.extra)."""
        close = getattr(scheme, "close", None)
        if close is not None:
            close()


__all__ = ["LMData", "LMPlan", "LMPlanInputs"]
