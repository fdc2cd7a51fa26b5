"""`kdkit tune CONFIG`: search the distillation's hyperparameters with Optuna (TPE sampler, seeded by the config's
seed), each trial scored by the distilled student's metric on the VALIDATION split (the test split is never read).

The teacher is trained (or loaded) once; every trial rebuilds the student from the same seed and distils it with
the config whose dotted paths (``tune.space``, e.g. ``distill.losses.0.T``) take the trial's values. Writes into
``<output_dir>/tune/``: ``study.db`` (Optuna's SQLite storage: a rerun continues the study), ``trials.csv`` and
``best.yaml``, the config with the best values, which ``kdkit train best.yaml`` runs as usual.

With ``tune.prune`` (default) a trial reports its validation metric after every epoch and Optuna's MedianPruner
stops it when it is worse than the median of earlier trials at that epoch (single-stage schemes; the assistants
chain and data-free runs always finish).
"""

from __future__ import annotations

import copy
import csv
import io
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from kdkit import metrics
from kdkit.checkpoint import load_weights, write_atomic
from kdkit.config import RunConfig, SearchRange, parse_config
from kdkit.data import Indexed, build_data, make_loader
from kdkit.errors import ConfigError
from kdkit.models import build_from_config
from kdkit.pipeline import distillation_data
from kdkit.schemes.from_config import SCHEME_PLANS, check_outputs, train_or_load
from kdkit.settings import HIGHER_IS_BETTER
from kdkit.terms import build_terms
from kdkit.trainer import predict, seed_everything


def set_path(raw: dict[str, Any], path: str, value: Any) -> None:
    """Set ``raw[a][b][0][c] = value`` for the path "a.b.0.c"; the last key may be new, the others must exist."""
    *parents, leaf = path.split(".")
    node: Any = raw
    for i, key in enumerate(parents):
        node = _child(node, key, ".".join(parents[: i + 1]), path)
    if isinstance(node, list):
        _child(node, leaf, path, path)  # a list index must exist
        node[int(leaf)] = value
    elif isinstance(node, dict):
        node[leaf] = value
    else:
        raise ConfigError(f"tune.space: '{path}' goes through a value, not a section; check the path")


def _child(node: Any, key: str, where: str, path: str) -> Any:
    if isinstance(node, dict) and key in node:
        return node[key]
    if isinstance(node, list) and key.isdigit() and int(key) < len(node):
        return node[int(key)]
    raise ConfigError(f"tune.space: '{path}' does not exist in the config (no '{where}'); give an existing path, "
                      "e.g. distill.losses.0.T")


def _suggest(trial: Any, path: str, space: SearchRange) -> Any:
    if space.choices is not None:
        return trial.suggest_categorical(path, space.choices)
    if space.integer:
        return trial.suggest_int(path, round(space.low), round(space.high), log=space.log)
    return trial.suggest_float(path, space.low, space.high, log=space.log)


def trial_config(raw: dict[str, Any], values: dict[str, Any]) -> RunConfig:
    """The config with the trial's values at their paths, validated like any config."""
    changed = copy.deepcopy(raw)
    for path, value in values.items():
        set_path(changed, path, value)
    return parse_config(changed)


def check_space(cfg: RunConfig) -> None:
    """Fail before any training when a path is wrong or a range's ends give an invalid config."""
    raw = cfg.model_dump(mode="json")
    for end in (0, -1):
        trial_config(raw, {path: _end(space, end) for path, space in cfg.tune.space.items()})


def _end(space: SearchRange, end: int) -> Any:
    if space.choices is not None:
        return space.choices[end]
    value = space.low if end == 0 else space.high
    return round(value) if space.integer else value


def tune(cfg: RunConfig, trials: int | None = None, console: Console | None = None) -> dict[str, Any]:
    """Run the search; returns the best values. See the module docstring for what is written."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("kdkit tune needs Optuna: pip install 'kdkit[tune]'") from None
    console = console or Console()
    check_space(cfg)
    raw = cfg.model_dump(mode="json")
    out = Path(cfg.output_dir) / "tune"
    bundle = build_data(cfg.data, cfg.seed)
    seed_everything(cfg.seed)
    teacher = build_from_config(cfg.teacher, bundle)
    if cfg.teacher.checkpoint is not None:
        load_weights(teacher, cfg.teacher.checkpoint)
    check_outputs(teacher, bundle, "teacher")
    out.mkdir(parents=True, exist_ok=True)
    train_or_load(teacher, cfg.teacher, cfg, bundle, out, "teacher")
    val_loader = make_loader(bundle.val, 512, shuffle=False)
    teacher_val = predict(teacher, val_loader)[0]

    def objective(trial: Any) -> float:
        values = {path: _suggest(trial, path, space) for path, space in cfg.tune.space.items()}
        trial_cfg = trial_config(raw, values)
        seed_everything(trial_cfg.seed + 1)  # every trial's student starts from the student-alone row's weights
        student = build_from_config(trial_cfg.student, bundle)
        plan = SCHEME_PLANS[trial_cfg.distill.scheme.name](
            trial_cfg, bundle, student, teacher, build_terms(trial_cfg.distill.losses))
        distill_set = distillation_data(trial_cfg, bundle)
        if trial_cfg.distill.cache_teacher:
            distill_set = Indexed(distill_set)
        s = trial_cfg.settings("distill").model_copy(update={"progress": False})

        def report(record: dict[str, Any]) -> None:
            value = record.get(f"val_{cfg.tune.metric}")
            if value is not None:
                trial.report(value, record["epoch"])
                if cfg.tune.prune and trial.should_prune():
                    raise optuna.TrialPruned()

        plan.distill(distill_set, make_loader(distill_set, s.batch_size, shuffle=True, seed=s.seed), val_loader, s,
                     None, on_epoch=report)
        logits, labels = predict(student, val_loader)
        return metrics.classification_report(logits, labels, teacher_val)[cfg.tune.metric]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="kdkit", storage=f"sqlite:///{out / 'study.db'}", load_if_exists=True,
        direction="maximize" if HIGHER_IS_BETTER[cfg.tune.metric] else "minimize",
        sampler=optuna.samplers.TPESampler(seed=cfg.seed),
        # pruning starts after 3 complete trials and from the 2nd epoch: early epochs say little about the end
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
    )
    study.optimize(objective, n_trials=trials or cfg.tune.trials)
    _write(out, raw, study, cfg, console)
    return dict(study.best_params)


def _write(out: Path, raw: dict[str, Any], study: Any, cfg: RunConfig, console: Console) -> None:
    done = [t for t in study.trials if t.value is not None]
    paths = list(cfg.tune.space)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["trial", "state", cfg.tune.metric, "epochs_run", *paths])
    for t in study.trials:  # pruned trials too: their value is the last one reported
        value = t.value if t.value is not None else (t.intermediate_values[max(t.intermediate_values)]
                                                     if t.intermediate_values else None)
        writer.writerow([t.number, t.state.name.lower(), value, max(t.intermediate_values, default=0),
                         *(t.params.get(p) for p in paths)])
    write_atomic(out / "trials.csv", buffer.getvalue())
    best = copy.deepcopy(raw)
    for path, value in study.best_params.items():
        set_path(best, path, value)
    best.pop("tune", None)
    write_atomic(out / "best.yaml", "# written by kdkit tune: the config with the best values found\n"
                 + yaml.safe_dump(best, sort_keys=False))
    pruned = sum(t.state.name == "PRUNED" for t in study.trials)
    table = Table(title=f"kdkit tune: validation {cfg.tune.metric}, {len(done)} complete trials (best first), "
                        f"{pruned} pruned")
    for column in ("trial", cfg.tune.metric, *paths):
        table.add_column(column, justify="right")
    ordered = sorted(done, key=lambda t: t.value, reverse=HIGHER_IS_BETTER[cfg.tune.metric])
    for t in ordered[:10]:
        table.add_row(str(t.number), f"{t.value:.4f}", *(_fmt(t.params.get(p)) for p in paths))
    console.print(table)
    console.print(f"best config: {out / 'best.yaml'}  (run it with: kdkit train {out / 'best.yaml'})")


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
