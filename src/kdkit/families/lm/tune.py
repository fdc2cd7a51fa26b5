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
from typing import Any

from rich.console import Console

from kdkit.errors import ConfigError, KdkitError
from kdkit.families.lm.config import LMRunConfig, parse_lm_config
from kdkit.run.rundir import TRIAL_RUNS, TUNE_TEACHER, RunDir
from kdkit.tune.config import SearchRange
from kdkit.tune.space import set_path, suggest
from kdkit.tune.study import optimize, search_study

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


def tune_lm(cfg: LMRunConfig, trials: int | None = None, console: Console | None = None,
            storage: str | None = None) -> dict[str, Any]:
    """Run the search; returns the best values by path."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("kdkit tune needs Optuna: pip install 'kdkit[tune]'") from None
    from kdkit.data.loaders import EVAL_BATCH_SIZE, make_loader
    from kdkit.families.lm.run import build_lm_models, distill, teacher_is_trained
    from kdkit.io.checkpoint import save_weights
    from kdkit.lm.metrics import lm_units, summarize_units
    from kdkit.schemes.supervised import Supervised
    from kdkit.trainer.batches import resolve_device
    from kdkit.trainer.loop import fit

    console = console or Console()
    space = lm_search_space(cfg)
    raw = cfg.model_dump(mode="json")
    for values in ({p: s.low if s.choices is None else s.choices[0] for p, s in space.items()},
                   {p: s.high if s.choices is None else s.choices[-1] for p, s in space.items()}):
        lm_trial_config(raw, values)  # a wrong path or an invalid end fails before the teacher trains
    out = RunDir(cfg.output_dir).tune
    data, transfer, teacher, student_init = build_lm_models(cfg)
    device = resolve_device(cfg.train.device)
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = search_study(optuna, out, cfg, space, storage)
    if teacher_is_trained(cfg):
        console.print(f"kdkit tune: training the teacher once, for every trial (saved as {out / TUNE_TEACHER})",
                      highlight=False)
        s = cfg.settings("teacher")
        fit(Supervised(teacher), make_loader(data.train, s.batch_size, shuffle=True, seed=s.seed),
            make_loader(data.val, EVAL_BATCH_SIZE, shuffle=False), s, run_dir=out, name="teacher")
        save_weights(teacher, out / TUNE_TEACHER)  # best.yaml points at it

    def objective(trial: Any) -> float:
        values = {path: suggest(trial, path, s) for path, s in space.items()}
        try:
            trial_cfg = lm_trial_config(raw, values)
            student = copy.deepcopy(student_init)  # every trial from the student-alone row's initial weights
            trial_dir = out / TRIAL_RUNS / str(trial.number)  # a top-k cache, the trial's checkpoints
            distill(trial_cfg, student, teacher, data, transfer, trial_dir, device)
            row = summarize_units(lm_units(student, data.val, teacher, device=device))
            shutil.rmtree(trial_dir, ignore_errors=True)  # scored: its checkpoints are not needed again
        except (KdkitError, ValueError) as err:  # kept with the trial, for trials.csv
            trial.set_user_attr("error", str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)
            raise
        return float(SCORES[cfg.tune.metric](row))

    return optimize(study, objective, trials or cfg.tune.trials, cfg, space, out, raw, console)


__all__ = ["lm_search_space", "lm_trial_config", "tune_lm"]
