"""`kdkit tune CONFIG`: search the distillation's hyperparameters with Optuna (TPE sampler, seeded by the config's
seed), each trial scored by the distilled student's metric on the VALIDATION split (the test split is never read).

The teacher is trained (or loaded) once; every trial rebuilds the student from the same seed and distils it with
the config whose dotted paths (``tune.space``, e.g. ``distill.losses.kd.T``: a loss term by its label, or
``distill.losses.0.T`` by position) take the trial's values. Writes into
``<output_dir>/tune/``: ``study.db`` (Optuna's SQLite storage: a rerun continues the study), ``trials.csv`` and
``best.yaml``, the config with the best values, which ``kdkit train best.yaml`` runs as usual.

The student alone gets the same number of trials over its own train settings (``tune.alone``, default on; see
kdkit.tune.alone): its best validation score is printed beside the best distilled trial, its trials go to
``alone_trials.csv``, and best.yaml trains each row with its own best settings.

With ``tune.prune`` (default) a trial reports its validation metric after every epoch and Optuna's MedianPruner
stops it when it is worse than the median of earlier trials at that epoch (single-stage schemes; the assistants
and born-again chains and data-free runs always finish).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from rich.console import Console
from torch import nn

from kdkit.data import DataBundle, build_data, make_loader
from kdkit.data.loaders import EVAL_BATCH_SIZE
from kdkit.errors import ConfigError
from kdkit.families.classification.config import RunConfig, parse_config
from kdkit.families.classification.pipeline import boundary_set, build_student, check_boundary, distillation_set
from kdkit.families.classification.plans import build_plan, check_outputs, train_or_load
from kdkit.io.checkpoint import load_weights, save_weights
from kdkit.measure import metrics
from kdkit.models import build_from_config
from kdkit.run.rundir import ALONE_TRIALS, TUNE_TEACHER
from kdkit.schemes.plan import check_init_from_teacher
from kdkit.terms import check_paths
from kdkit.trainer.loop import fit, predict, seed_everything
from kdkit.tune.alone import ALONE_STUDY, AloneBest, alone_raw, alone_space
from kdkit.tune.config import SearchRange
from kdkit.tune.loop import run_search
from kdkit.tune.space import decode_params, range_end, set_path, suggest
from kdkit.tune.study import complete_trials, run_trials, search_study, write_trials


def default_space(cfg: RunConfig) -> dict[str, SearchRange]:
    """What `kdkit tune` searches when the config gives no space: the scheme says (by default the temperature and
    the hard-label weight of the first loss term, e.g. distill.losses.kd.T; see SchemeOptions.tune_space)."""
    return {path: SearchRange(**r) for path, r in cfg.distill.scheme.tune_space(cfg.distill.losses).items()}


def search_space(cfg: RunConfig) -> dict[str, SearchRange]:
    """The config's tune.space, or the scheme's default (its T and alpha)."""
    return cfg.tune.space if cfg.tune.space is not None else default_space(cfg)


def trial_config(raw: dict[str, Any], values: dict[str, Any]) -> RunConfig:
    """The config with the trial's values at their paths, validated like any config."""
    changed = copy.deepcopy(raw)
    for path, value in values.items():
        set_path(changed, path, value)
    return parse_config(changed)


def check_space(cfg: RunConfig, bundle: DataBundle | None = None, teacher: nn.Module | None = None) -> None:
    """Fail before any training when a path is wrong, or when a range's ends or any choice give an invalid config
    (or, given the data and the teacher, a student that cannot be built or run on it, or loss terms that name
    modules the models lack)."""
    raw = cfg.model_dump(mode="json")
    searches = [(raw, search_space(cfg))] + ([(alone_raw(raw, cfg), alone_space(cfg))] if cfg.tune.alone else [])
    variants = []
    for base, space in searches:
        ends = [{p: range_end(s, end) for p, s in space.items()} for end in (0, -1)]
        variants += [(base, v) for v in ends + [{**ends[0], p: c} for p, s in space.items() for c in s.choices or []]]
    for base, values in variants:
        trial = trial_config(base, values)
        if bundle is not None:
            check_boundary(trial, bundle)
        if bundle is not None and teacher is not None:
            student = build_student(trial, bundle)
            check_outputs(student, bundle, "student")
            check_paths(student, teacher, trial.distill.loss_terms())
            check_init_from_teacher(trial.distill.init_from_teacher, trial.student.quantize is not None, student,
                                    teacher)


class ClassificationSearch:
    """The classification family's side of the one tune loop (kdkit.tune.loop): the teacher trained once, every
    trial's student built from the same seed and distilled on the same data as `kdkit train`, scored on the
    validation split; the student alone searched too when ``tune.alone``."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.space = search_space(cfg)
        self.raw = cfg.model_dump(mode="json")
        # boundary samples depend on the fixed teacher, distill.boundary and the distillation's seed and device
        # only: made once per distinct setting, not once per trial
        self.boundaries: dict[str, Any] = {}
        # epoch records score fidelity against the scheme's own reference (an EMA, a peer, an ensemble): only the
        # offline scheme's is the teacher that the final score uses, so only there can fidelity metrics prune
        self.prunable = cfg.tune.prune and (cfg.tune.metric not in ("agreement", "predictive_kl")
                                            or type(cfg.distill.scheme).logs_fidelity)

    def prepare(self, console: Console) -> None:
        cfg = self.cfg
        self.console = console
        check_space(cfg)
        self.bundle = build_data(cfg.data, cfg.seed)
        from kdkit.data.checks import check_classes

        check_classes(self.bundle)
        seed_everything(cfg.seed)
        self.teacher = build_from_config(cfg.teacher, self.bundle)
        if cfg.teacher.checkpoint is not None:
            load_weights(self.teacher, cfg.teacher.checkpoint)
        check_outputs(self.teacher, self.bundle, "teacher")
        check_space(cfg, self.bundle, self.teacher)  # every variant builds and runs, before the teacher trains

    def train_teacher(self, out: Path, console: Console) -> None:
        cfg = self.cfg
        if cfg.teacher.checkpoint is None:
            console.print(f"kdkit tune: training the teacher once, for every trial (saved as {out / TUNE_TEACHER})",
                          highlight=False)
        train_or_load(self.teacher, cfg.teacher, cfg, self.bundle, out, "teacher")
        if cfg.teacher.checkpoint is None:  # best.yaml points at it, so `kdkit train best.yaml` does not train it again
            save_weights(self.teacher, out / TUNE_TEACHER)
        self.val_loader = make_loader(self.bundle.val, EVAL_BATCH_SIZE, shuffle=False)
        self.teacher_val = predict(self.teacher, self.val_loader)[0]

    def boundary_for(self, trial_cfg: RunConfig) -> Any:
        if trial_cfg.distill.boundary is None:
            return None
        s = trial_cfg.settings("distill")
        key = f"{trial_cfg.distill.boundary.model_dump_json()} {s.seed} {s.device}"
        if key not in self.boundaries:
            self.boundaries[key] = boundary_set(trial_cfg, self.bundle, self.teacher)
            self.console.print(self.boundaries[key].stats.summary())
        return self.boundaries[key]

    def score(self, trial: Any, values: dict[str, Any]) -> float:
        trial_cfg = trial_config(self.raw, values)
        student = build_student(trial_cfg, self.bundle)  # the same initial weights as the student-alone row
        plan = build_plan(trial_cfg, self.bundle, student, self.teacher, trial_cfg.distill.loss_terms())
        distill_set = distillation_set(trial_cfg, self.bundle, self.boundary_for(trial_cfg))
        s = trial_cfg.settings("distill").model_copy(update={"progress": False})
        plan.distill(distill_set, make_loader(distill_set, s.batch_size, shuffle=True, seed=s.seed), self.val_loader,
                     s, None, on_epoch=pruning_reporter(trial, self.cfg.tune.metric, s.epochs, self.prunable))
        logits, labels = predict(student, self.val_loader)
        return metrics.classification_report(logits, labels, self.teacher_val)[self.cfg.tune.metric]

    def alone(self, optuna: Any, out: Path, storage: str | None, total: int, console: Console) -> AloneBest | None:
        """The same budget for the student alone over its own settings: its best is the baseline best.yaml keeps."""
        if not self.cfg.tune.alone:
            return None
        return search_alone(optuna, self.cfg, self.raw, self.bundle, self.val_loader, self.teacher_val, out,
                            storage, total, console)


def pruning_reporter(trial: Any, metric: str, epochs: int, prunable: bool) -> Any:
    """An on_epoch callback: the epoch's validation `metric` reported to Optuna, the trial pruned when the study's
    pruner says so (never at its first or last epoch)."""

    def report(record: dict[str, Any]) -> None:
        value = record.get(f"val_{metric}")
        if value is None or not prunable:
            return
        trial.report(value, record["epoch"])
        if 1 < record["epoch"] < epochs and trial.should_prune():
            import optuna

            raise optuna.TrialPruned()

    return report


def tune(cfg: RunConfig, trials: int | None = None, console: Console | None = None,
         storage: str | None = None) -> dict[str, Any]:
    """Run the search; returns the best values. See the module docstring for what is written. `storage`: a
    database URL (e.g. postgresql+psycopg://host/db) that several workers share; each runs `trials` trials into
    the one study (default: SQLite in <output_dir>/tune/study.db, this process only)."""
    return run_search(ClassificationSearch(cfg), trials, console, storage)


def search_alone(optuna: Any, cfg: RunConfig, raw: dict[str, Any], bundle: Any, val_loader: Any, teacher_val: Any,
                 out: Path, storage: str | None, total: int, console: Console) -> AloneBest:
    """Run the student alone's `total` trials (a rerun continues its study) and return the best one."""
    from kdkit.data import make_loader
    from kdkit.families.classification.pipeline import build_student
    from kdkit.schemes import Supervised
    from kdkit.trainer.loop import predict

    space = alone_space(cfg)
    study = search_study(optuna, out, cfg, space, storage, name=ALONE_STUDY)
    raw = alone_raw(raw, cfg)

    def objective(trial: Any) -> float:
        trial_cfg = trial_config(raw, {path: suggest(trial, path, s) for path, s in space.items()})
        student = build_student(trial_cfg, bundle)  # the same initial weights as every distilled trial's student
        s = trial_cfg.settings("student").model_copy(update={"progress": False})

        fit(Supervised(student, s.label_smoothing), make_loader(bundle.train, s.batch_size, shuffle=True,
                                                                seed=s.seed), val_loader, s, None,
            on_epoch=pruning_reporter(trial, cfg.tune.metric, s.epochs, cfg.tune.prune))
        logits, labels = predict(student, val_loader)
        return metrics.classification_report(logits, labels, teacher_val)[cfg.tune.metric]

    console.print(f"kdkit tune: the student alone gets the same {total} trials over its own settings "
                  f"({', '.join(space)})", highlight=False)
    run_trials(study, objective, total, cfg.tune.metric, list(space), console, catch=(ConfigError, ValueError))
    write_trials(out / ALONE_TRIALS, study, cfg.tune.metric, list(space))
    if not complete_trials(study):  # a pruned trial has a value too, but did not finish
        raise ConfigError(f"no trial of the student alone finished; see {ALONE_TRIALS}")
    best = study.best_trial
    return AloneBest(best.value, best.number, decode_params(space, best.params), len(study.trials))
