"""`kdkit tune` of a language-model config: an Optuna search over student and distillation values, each trial
distilling the student (from the same initial weights, with the same batches) from a teacher trained once, scored
on the validation split (per-token NLL by default; see kdkit.families.lm.config.LMTuneConfig).

Like the classification search (it shares kdkit.tune.study: the study, the trial lines and the output files): the study
is kept in OUTPUT_DIR/tune/study.db (a rerun goes on), every trial is listed in trials.csv, and best.yaml is the config
with the best values and the search's teacher as its checkpoint, so `kdkit train OUTPUT_DIR/tune/best.yaml` gives the
three-row table without training the teacher again.
"""

from __future__ import annotations

import copy
import math
import shutil
from pathlib import Path
from typing import Any

from rich.console import Console

from kdkit.errors import ConfigError
from kdkit.families.lm.config import LMRunConfig, parse_lm_config
from kdkit.run.rundir import TRIAL_RUNS, TUNE_TEACHER, RunDir
from kdkit.tune.config import SearchRange
from kdkit.tune.loop import run_search
from kdkit.tune.space import set_path

# the validation number of each metric, from kdkit.lm.metrics.summarize_units
SCORES = {"nll": lambda row: math.log(row["perplexity"]), "accuracy": lambda row: row["token_accuracy"],
          "agreement": lambda row: row["agreement"], "predictive_kl": lambda row: row["per_token_kl"]}


def lm_search_space(cfg: LMRunConfig) -> dict[str, SearchRange]:
    """The config's tune.space, or the scheme's default (the token divergence's weight; on-policy also lambda)."""
    if cfg.tune.space is not None:
        return dict(cfg.tune.space)
    space = {p: SearchRange(**r) for p, r in cfg.distill.scheme.tune_space(cfg.distill.losses).items()}
    if not space:
        raise ConfigError("config error at tune.space: distill.losses has no token divergence to weigh; give a "
                          "space, e.g. {distill.losses.ce.weight: {low: 0.1, high: 10, log: true}}")
    return space


def lm_trial_config(raw: dict[str, Any], values: dict[str, Any]) -> LMRunConfig:
    changed = copy.deepcopy(raw)
    for path, value in values.items():
        set_path(changed, path, value)
    return parse_lm_config(changed)


class LMSearch:
    """The language-model family's side of the one tune loop (kdkit.tune.loop): the teacher trained once, every
    trial's student from the student-alone row's initial weights, scored on the validation split."""

    def __init__(self, cfg: LMRunConfig) -> None:
        self.cfg = cfg

    def prepare(self, console: Console) -> None:
        from kdkit.families.lm.run import build_lm_models
        from kdkit.trainer.batches import resolve_device

        self.space = lm_search_space(self.cfg)
        self.raw = self.cfg.model_dump(mode="json")
        for values in ({p: s.low if s.choices is None else s.choices[0] for p, s in self.space.items()},
                       {p: s.high if s.choices is None else s.choices[-1] for p, s in self.space.items()}):
            lm_trial_config(self.raw, values)  # a wrong path or an invalid end fails before the teacher trains
        self.data, self.transfer, self.teacher, self.student_init = build_lm_models(self.cfg)
        self.device = resolve_device(self.cfg.train.device)

    def train_teacher(self, out: Path, console: Console) -> None:
        from kdkit.data.loaders import EVAL_BATCH_SIZE, make_loader
        from kdkit.families.lm.run import teacher_is_trained
        from kdkit.io.checkpoint import save_weights
        from kdkit.schemes.supervised import Supervised
        from kdkit.trainer.loop import fit

        if not teacher_is_trained(self.cfg):
            return
        console.print(f"kdkit tune: training the teacher once, for every trial (saved as {out / TUNE_TEACHER})",
                      highlight=False)
        s = self.cfg.settings("teacher")
        fit(Supervised(self.teacher), make_loader(self.data.train, s.batch_size, shuffle=True, seed=s.seed),
            make_loader(self.data.val, EVAL_BATCH_SIZE, shuffle=False), s, run_dir=out, name="teacher")
        save_weights(self.teacher, out / TUNE_TEACHER)  # best.yaml points at it

    def score(self, trial: Any, values: dict[str, Any]) -> float:
        from kdkit.families.lm.run import distill
        from kdkit.lm.metrics import lm_units, summarize_units

        trial_cfg = lm_trial_config(self.raw, values)
        student = copy.deepcopy(self.student_init)  # every trial from the student-alone row's initial weights
        trial_dir = RunDir(self.cfg.output_dir).tune / TRIAL_RUNS / str(trial.number)  # a top-k cache, checkpoints
        distill(trial_cfg, student, self.teacher, self.data, self.transfer, trial_dir, self.device)
        row = summarize_units(lm_units(student, self.data.val, self.teacher, device=self.device))
        shutil.rmtree(trial_dir, ignore_errors=True)  # scored: its checkpoints are not needed again
        return float(SCORES[self.cfg.tune.metric](row))

    def alone(self, optuna: Any, out: Path, storage: str | None, total: int, console: Console) -> None:
        return None  # the LM search tunes the distillation only


def tune_lm(cfg: LMRunConfig, trials: int | None = None, console: Console | None = None,
            storage: str | None = None) -> dict[str, Any]:
    """Run the search; returns the best values by path."""
    return run_search(LMSearch(cfg), trials, console, storage)


__all__ = ["LMSearch", "lm_search_space", "lm_trial_config", "tune_lm"]
