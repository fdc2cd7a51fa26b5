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
import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table
from torch import nn

from kdkit.data import DataBundle, build_data, make_loader
from kdkit.errors import ConfigError, KdkitError
from kdkit.families.classification.config import RunConfig, SearchRange, parse_config
from kdkit.families.classification.pipeline import boundary_set, build_student, check_boundary, distillation_set
from kdkit.families.classification.plans import build_plan, check_outputs, train_or_load
from kdkit.io.checkpoint import load_weights, save_weights, write_atomic
from kdkit.measure import metrics
from kdkit.models import build_from_config
from kdkit.report.table import print_unwrapped
from kdkit.schemes.plan import check_init_from_teacher
from kdkit.terms import check_paths, term_labels
from kdkit.trainer.loop import predict, seed_everything
from kdkit.trainer.settings import HIGHER_IS_BETTER
from kdkit.tune.alone import AloneBest, alone_raw, alone_space, own_settings, search_alone, summary
from kdkit.tune.study import open_study

TEACHER = "teacher.safetensors"  # the teacher tune trained, in <output_dir>/tune/
TABLE_ROWS = 10  # complete trials in the printed table (trials.csv has every trial)


def trial_reporter(console: Console, metric: str, total: int, paths: list[str]) -> Any:
    """An Optuna callback printing one line per finished trial: its state and value, the best so far, its
    values and how long it took, so a long search is never silent."""
    higher = HIGHER_IS_BETTER[metric]

    def report(study: Any, trial: Any) -> None:
        done = complete_trials(study)
        best = (max if higher else min)(done, key=lambda t: t.value) if done else None
        took = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else 0
        if trial.state.name == "COMPLETE":
            value = f"{metric} {trial.value:.4f}"
        elif trial.state.name == "PRUNED" and trial.intermediate_values:
            epoch = max(trial.intermediate_values)
            value = f"pruned after epoch {epoch} ({metric} {trial.intermediate_values[epoch]:.4f} then)"
        else:
            value = trial.state.name.lower()
        best_text = f"best so far {best.value:.4f} (trial {best.number})" if best else "no complete trial yet"
        values = ", ".join(f"{p}={_fmt(trial.params.get(p))}" for p in paths)
        console.print(f"trial {trial.number} ({len(study.trials)}/{total}): {value}; {best_text}; {values}; "
                      f"{took:.0f} s", highlight=False, markup=False, soft_wrap=True)

    return report


def complete_trials(study: Any) -> list[Any]:
    """The trials that ran to the end. Optuna gives a pruned trial a value too (its last reported one), which must
    neither count as complete nor compete for the best."""
    return [t for t in study.trials if t.state.name == "COMPLETE"]


def set_path(raw: dict[str, Any], path: str, value: Any) -> None:
    """Set ``raw[a][b][0][c] = value`` for the path "a.b.0.c"; the last key may be new, the others must exist. In a
    list of loss terms an item is named by position or by label ("distill.losses.kd.T"; see term_labels)."""
    *parents, leaf = path.split(".")
    node: Any = raw
    for i, key in enumerate(parents):
        node = _child(node, key, ".".join(parents[: i + 1]), path)
    if isinstance(node, list):
        _child(node, leaf, path, path)  # the item must exist
        node[_list_index(node, leaf)] = value
    elif isinstance(node, dict):
        node[leaf] = value
    else:
        raise ConfigError(f"tune.space: '{path}' goes through a value, not a section; check the path")


def _list_index(node: list[Any], key: str) -> int | None:
    """The position `key` names in a list: a number, or the label of a term (a dict with a name)."""
    if key.isdigit():
        return int(key) if int(key) < len(node) else None
    if not all(isinstance(item, dict) and "name" in item for item in node):
        return None
    labels = term_labels([item["name"] for item in node])
    return labels.index(key) if key in labels else None


def _child(node: Any, key: str, where: str, path: str) -> Any:
    if isinstance(node, dict) and key in node:
        return node[key]
    if isinstance(node, list) and (index := _list_index(node, key)) is not None:
        return node[index]
    raise ConfigError(f"tune.space: '{path}' does not exist in the config (no '{where}'); give an existing path, "
                      "e.g. distill.losses.kd.T (a term by name; kd2 for a second kd term) or distill.losses.0.T")


def _compound(space: SearchRange) -> bool:
    """Whether a choice is a list or mapping (e.g. an augmentation), which Optuna records as its JSON text."""
    return space.choices is not None and any(isinstance(c, (list, dict)) for c in space.choices)


def _suggest(trial: Any, path: str, space: SearchRange) -> Any:
    if _compound(space):
        return json.loads(trial.suggest_categorical(path, [json.dumps(c) for c in space.choices]))
    if space.choices is not None:
        return trial.suggest_categorical(path, space.choices)
    if space.integer:
        return trial.suggest_int(path, math.ceil(space.low), math.floor(space.high), log=space.log)
    return trial.suggest_float(path, space.low, space.high, log=space.log)


def decode_params(space: dict[str, SearchRange], params: dict[str, Any]) -> dict[str, Any]:
    """A trial's values by path, compound choices back from their JSON text."""
    return {p: json.loads(v) if p in space and _compound(space[p]) else v for p, v in params.items()}


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
        ends = [{p: _end(s, end) for p, s in space.items()} for end in (0, -1)]
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


def _end(space: SearchRange, end: int) -> Any:
    if space.choices is not None:
        return space.choices[end]
    if space.integer:
        return math.ceil(space.low) if end == 0 else math.floor(space.high)
    return space.low if end == 0 else space.high


def _study(optuna: Any, out: Path, cfg: RunConfig, space: dict[str, SearchRange], shared: str | None = None,
           name: str = "kdkit") -> Any:
    """The study `name` in out/study.db: new, or the one an earlier run of the same search left there. A study made
    for another metric or search space is refused: mixing them would rank incomparable numbers."""
    signature = {"metric": cfg.tune.metric, "space": {p: s.model_dump() for p, s in space.items()}}
    storage = shared or f"sqlite:///{out / 'study.db'}"
    direction = "maximize" if HIGHER_IS_BETTER[cfg.tune.metric] else "minimize"
    try:  # workers of a shared study may start together: open_study survives their race to create the tables
        study = open_study(optuna, study_name=name, storage=storage, direction=direction)
    except (ImportError, ValueError) as err:  # a bad URL, a missing driver
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"cannot open the Optuna storage {storage!r}: {first}") from None
    if "search" not in study.user_attrs:
        study.set_user_attr("search", signature)
    if study.user_attrs.get("search") != signature:
        raise ConfigError(f"{shared or out / 'study.db'} holds a search with another metric or space; delete it to "
                          "start over, or set another output_dir (or study storage)")
    # a rerun goes on where the last one stopped: the sampler's seed moves on, or it would propose the same values;
    # workers sharing a study also differ by process, or two starting together would propose the same values
    seed = cfg.seed + len(study.trials) + (os.getpid() if shared else 0)
    study.sampler = optuna.samplers.TPESampler(seed=seed % 2**32)
    # pruning starts after 3 complete trials, and never at a trial's first or last epoch (see objective)
    study.pruner = optuna.pruners.MedianPruner(n_startup_trials=3)
    return study


def tune(cfg: RunConfig, trials: int | None = None, console: Console | None = None,
         storage: str | None = None) -> dict[str, Any]:
    """Run the search; returns the best values. See the module docstring for what is written. `storage`: a
    database URL (e.g. postgresql+psycopg://host/db) that several workers share; each runs `trials` trials into
    the one study (default: SQLite in <output_dir>/tune/study.db, this process only)."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("kdkit tune needs Optuna: pip install 'kdkit[tune]'") from None
    console = console or Console()
    space = search_space(cfg)
    check_space(cfg)
    raw = cfg.model_dump(mode="json")
    out = Path(cfg.output_dir) / "tune"
    bundle = build_data(cfg.data, cfg.seed)
    from kdkit.data.checks import check_classes

    check_classes(bundle)
    seed_everything(cfg.seed)
    teacher = build_from_config(cfg.teacher, bundle)
    if cfg.teacher.checkpoint is not None:
        load_weights(teacher, cfg.teacher.checkpoint)
    check_outputs(teacher, bundle, "teacher")
    check_space(cfg, bundle, teacher)  # every variant's student builds and runs, before the teacher trains
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = _study(optuna, out, cfg, space, storage)
    if cfg.teacher.checkpoint is None:
        console.print(f"kdkit tune: training the teacher once, for every trial (saved as {out / TEACHER})",
                      highlight=False)
    train_or_load(teacher, cfg.teacher, cfg, bundle, out, "teacher")
    if cfg.teacher.checkpoint is None:  # best.yaml points at it, so `kdkit train best.yaml` does not train it again
        save_weights(teacher, out / TEACHER)
    val_loader = make_loader(bundle.val, 512, shuffle=False)
    teacher_val = predict(teacher, val_loader)[0]
    # epoch records score fidelity against the scheme's own reference (an EMA, a peer, an ensemble): only the
    # offline scheme's is the teacher that the final score uses, so only there can fidelity metrics prune
    # boundary samples depend on the fixed teacher, distill.boundary and the distillation's seed and device only:
    # made once per distinct setting, not once per trial
    boundaries: dict[str, Any] = {}

    def boundary_for(trial_cfg: RunConfig) -> Any:
        if trial_cfg.distill.boundary is None:
            return None
        s = trial_cfg.settings("distill")
        key = f"{trial_cfg.distill.boundary.model_dump_json()} {s.seed} {s.device}"
        if key not in boundaries:
            boundaries[key] = boundary_set(trial_cfg, bundle, teacher)
            console.print(boundaries[key].stats.summary())
        return boundaries[key]

    prunable = cfg.tune.prune and (cfg.tune.metric not in ("agreement", "predictive_kl")
                                   or type(cfg.distill.scheme).logs_fidelity)

    def objective(trial: Any) -> float:
        try:
            return run_trial(trial)
        except (KdkitError, ValueError) as err:  # kept with the trial, for trials.csv
            trial.set_user_attr("error", str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)
            raise

    def run_trial(trial: Any) -> float:
        values = {path: _suggest(trial, path, s) for path, s in space.items()}
        trial_cfg = trial_config(raw, values)
        student = build_student(trial_cfg, bundle)  # the same initial weights as the student-alone row
        plan = build_plan(trial_cfg, bundle, student, teacher, trial_cfg.distill.loss_terms())  # terms parsing built
        distill_set = distillation_set(trial_cfg, bundle, boundary_for(trial_cfg))  # the same data as `kdkit train`
        s = trial_cfg.settings("distill").model_copy(update={"progress": False})

        def report(record: dict[str, Any]) -> None:
            value = record.get(f"val_{cfg.tune.metric}")
            if value is None or not prunable:
                return
            trial.report(value, record["epoch"])
            if 1 < record["epoch"] < s.epochs and trial.should_prune():
                raise optuna.TrialPruned()

        plan.distill(distill_set, make_loader(distill_set, s.batch_size, shuffle=True, seed=s.seed), val_loader, s,
                     None, on_epoch=report)
        logits, labels = predict(student, val_loader)
        return metrics.classification_report(logits, labels, teacher_val)[cfg.tune.metric]

    total = trials or cfg.tune.trials
    # the same budget for the student alone over its own settings: its best is the baseline best.yaml keeps
    alone = (search_alone(optuna, cfg, raw, bundle, val_loader, teacher_val, out, storage, total, console)
             if cfg.tune.alone else None)
    return optimize(study, objective, total, cfg, space, out, raw, console, alone)


def optimize(study: Any, objective: Any, total: int, cfg: Any, space: dict[str, SearchRange], out: Path,
             raw: dict[str, Any], console: Console, alone: AloneBest | None = None) -> dict[str, Any]:
    """Run `total` trials with a line each, write trials.csv and best.yaml (also after Ctrl-C: finished trials are
    kept) and return the best values by path; a trial that diverges (NaN loss) or gets an invalid value is recorded
    as failed and the search goes on. `cfg`: a classification or a language-model config (its tune and seed).
    `alone`: the student alone's best trial, whose settings best.yaml gives its row (kdkit.tune.alone)."""
    try:
        console.print(f"kdkit tune: {total} trials, each a distillation scored by validation {cfg.tune.metric}",
                      highlight=False)
        study.optimize(objective, n_trials=total, catch=(KdkitError, ValueError),
                       callbacks=[trial_reporter(console, cfg.tune.metric, total, list(space))])
    finally:
        if complete_trials(study):
            _write(out, raw, study, cfg, space, console, alone)
    if not complete_trials(study):
        failed = [t.user_attrs["error"] for t in study.trials if "error" in t.user_attrs]
        raise ConfigError(f"no trial finished; the first failure: {failed[0] if failed else 'none recorded'}")
    return decode_params(space, dict(study.best_params))


def write_trials(path: Path, study: Any, metric: str, paths: list[str]) -> None:
    """Every trial of `study` as one CSV row: complete, pruned (with its last reported epoch value) or failed; only
    a complete trial's value fills the metric column."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["trial", "state", metric, "last_reported", "epochs_reported", *paths, "error"])
    for t in study.trials:
        last = t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else ""
        writer.writerow([t.number, t.state.name.lower(), t.value if t.state.name == "COMPLETE" else "", last,
                         max(t.intermediate_values, default=""), *(t.params.get(p) for p in paths),
                         t.user_attrs.get("error", "")])
    write_atomic(path, buffer.getvalue())


def _write(out: Path, raw: dict[str, Any], study: Any, cfg: RunConfig, space: dict[str, SearchRange],
           console: Console, alone: AloneBest | None = None) -> None:
    done = complete_trials(study)
    paths = list(space)
    write_trials(out / "trials.csv", study, cfg.tune.metric, paths)
    best = copy.deepcopy(raw)
    distilled = decode_params(space, dict(study.best_params))
    for path, value in distilled.items():
        set_path(best, path, value)
    if alone is not None:
        own_settings(best, cfg, distilled, alone)
    best.pop("tune", None)
    if (out / TEACHER).is_file() and best.get("teacher", {}).get("checkpoint") is None:
        best["teacher"]["checkpoint"] = str(out / TEACHER)  # the teacher this search trained and scored against
        best["teacher"]["train"] = {}  # trained already (a language model with train settings would fine-tune again)
    write_atomic(out / "best.yaml", "# written by kdkit tune: the config with the best values found\n"
                 + yaml.safe_dump(best, sort_keys=False))
    states = [t.state.name for t in study.trials]
    shown = f"the best {TABLE_ROWS} of {len(done)}" if len(done) > TABLE_ROWS else f"all {len(done)}"
    table = Table(title=f"kdkit tune: validation {cfg.tune.metric}, {len(study.trials)} trials: {len(done)} complete "
                        f"({shown} below, best first), {states.count('PRUNED')} pruned, {states.count('FAIL')} failed "
                        "(every trial: trials.csv)")
    for column in ("trial", cfg.tune.metric, *paths):
        table.add_column(column, justify="right")
    ordered = sorted(done, key=lambda t: t.value, reverse=HIGHER_IS_BETTER[cfg.tune.metric])
    for t in ordered[:TABLE_ROWS]:
        table.add_row(str(t.number), f"{t.value:.4f}", *(_fmt(t.params.get(p)) for p in paths))
    print_unwrapped(table, console)
    if alone is not None:
        console.print(summary(alone, study.best_value, cfg.tune.metric, HIGHER_IS_BETTER[cfg.tune.metric]),
                      highlight=False, markup=False, soft_wrap=True)
    console.print(f"best config: {out / 'best.yaml'}  (run it with: kdkit train {out / 'best.yaml'})")


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
