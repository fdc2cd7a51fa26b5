"""The Optuna study of `kdkit tune`, whatever the family: opening it (also shared by several workers in one database,
e.g. PostgreSQL), a line per finished trial, running the trials, and the files a search writes into
``<output_dir>/tune/``: ``study.db`` (a rerun continues the study), ``trials.csv`` and ``best.yaml``, the config with
the best values. The family supplies the objective (a trial's score on the validation split) and its config.

Opening a shared study:

Workers started together on a fresh database race to create Optuna's tables: all but one fail with an error from
the database (a type or table that already exists). The tables exist by then, so opening again succeeds; this
module retries a few times instead of letting a worker die of it (found by the two-worker PostgreSQL test)."""

from __future__ import annotations

import copy
import csv
import io
import os
import random
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from kdkit.errors import ConfigError, KdkitError
from kdkit.io.checkpoint import write_atomic
from kdkit.report.table import print_unwrapped
from kdkit.run.rundir import BEST, STUDY, TRIALS, TUNE_TEACHER
from kdkit.trainer.settings import HIGHER_IS_BETTER
from kdkit.tune.alone import AloneBest, own_settings, summary
from kdkit.tune.config import SearchRange
from kdkit.tune.space import decode_params, set_path

TABLE_ROWS = 10  # complete trials in the printed table (trials.csv has every trial)


def open_study(optuna: Any, attempts: int = 5, **kwargs: Any) -> Any:
    """optuna.create_study(load_if_exists=True, **kwargs), retried after a lost race to create the schema.
    A bad URL or missing driver (ImportError, ValueError) is not retried."""
    for attempt in range(attempts):
        try:
            return optuna.create_study(load_if_exists=True, **kwargs)
        except (ImportError, ValueError):
            raise
        except Exception:  # sqlalchemy's IntegrityError / ProgrammingError of the concurrent schema creation
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 + random.random() * 0.5)  # noqa: S311 - jitter, not security
    raise AssertionError("unreachable")


def open_storage(optuna: Any, storage: str, **kwargs: Any) -> Any:
    """open_study on `storage` (workers of a shared study may start together: it survives their race to create the
    tables); a bad URL or a missing driver is one ConfigError line."""
    try:
        return open_study(optuna, storage=storage, **kwargs)
    except (ImportError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"cannot open the Optuna storage {storage!r}: {first}") from None


def higher_is_better(tune: Any) -> bool:
    """Whether the search's metric is better higher: a family whose metrics are its own (a table's log loss, ROC AUC)
    says so in its tune section; the others' are the trainer's (HIGHER_IS_BETTER)."""
    own = getattr(tune, "higher_is_better", None)
    return HIGHER_IS_BETTER[tune.metric] if own is None else bool(own)


def search_study(optuna: Any, out: Path, cfg: Any, space: dict[str, SearchRange], shared: str | None = None,
                 name: str | None = None, held_out: dict[str, Any] | None = None) -> Any:
    """The study `name` (default: the tune section's `study` where it has one, else "kdkit") in out/study.db: new,
    or the one an earlier run of the same search left there. A study made for another metric, search space or
    held-out rows (`held_out`: the rows a family's search never sees) is refused: mixing them would rank
    incomparable numbers, or score the best on rows some trials were fitted on."""
    name = name or getattr(cfg.tune, "study", "kdkit")
    signature = {"metric": cfg.tune.metric, "space": {p: s.model_dump() for p, s in space.items()},
                 **({"held_out": held_out} if held_out is not None else {})}
    storage = shared or f"sqlite:///{out / STUDY}"
    direction = "maximize" if higher_is_better(cfg.tune) else "minimize"
    study = open_storage(optuna, storage, study_name=name, direction=direction)
    stored = study.user_attrs.get("search")
    if stored is None or (held_out is not None and "held_out" not in stored and
                          {k: v for k, v in signature.items() if k != "held_out"} == stored):
        study.set_user_attr("search", signature)  # new, or made before studies kept their held-out rows
        stored = signature
    differs = [part for part in ("metric", "space", "held_out") if stored.get(part) != signature.get(part)]
    if differs:
        what = {"metric": "another metric", "space": "another search space", "held_out": "other held-out rows"}
        shown = f" ({stored.get('held_out')}, now {held_out})" if differs[0] == "held_out" else ""
        raise ConfigError(f"{shared or out / STUDY} holds a search with {what[differs[0]]}{shown}; delete it to start "
                          "over, or set another output_dir (or study storage)")
    # a rerun goes on where the last one stopped: the sampler's seed moves on, or it would propose the same values;
    # workers sharing a study also differ by process, or two starting together would propose the same values
    seed = cfg.seed + len(study.trials) + (os.getpid() if shared else 0)
    study.sampler = optuna.samplers.TPESampler(seed=seed % 2**32)
    # pruning starts after 3 complete trials, and never at a trial's first or last epoch (see objective)
    study.pruner = optuna.pruners.MedianPruner(n_startup_trials=3)
    return study


def trial_reporter(console: Console, metric: str, total: int, paths: list[str], higher: bool | None = None,
                   step: str = "epoch") -> Any:
    """An Optuna callback printing one line per finished trial: its state and value, the best so far, its
    values and how long it took, so a long search is never silent. `higher`: whether the metric is better higher
    (default: the trainer's metrics say); `step`: what a trial reports its value after (an epoch, a fold)."""
    higher = HIGHER_IS_BETTER[metric] if higher is None else higher

    def report(study: Any, trial: Any) -> None:
        done = complete_trials(study)
        best = (max if higher else min)(done, key=lambda t: t.value) if done else None
        took = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else 0
        if trial.state.name == "COMPLETE":
            value = f"{metric} {trial.value:.4f}"
        elif trial.state.name == "PRUNED" and trial.intermediate_values:
            epoch = max(trial.intermediate_values)
            value = f"pruned after {step} {epoch} ({metric} {trial.intermediate_values[epoch]:.4f} then)"
        else:
            value = trial.state.name.lower()
        best_text = f"best so far {best.value:.4f} (trial {best.number})" if best else "no complete trial yet"
        values = ", ".join(f"{p}={fmt_value(trial.params.get(p))}" for p in paths)
        console.print(f"trial {trial.number} ({len(study.trials)}/{total}): {value}; {best_text}; {values}; "
                      f"{took:.0f} s", highlight=False, markup=False, soft_wrap=True)

    return report


def complete_trials(study: Any) -> list[Any]:
    """The trials that ran to the end. Optuna gives a pruned trial a value too (its last reported one), which must
    neither count as complete nor compete for the best."""
    return [t for t in study.trials if t.state.name == "COMPLETE"]


def run_trials(study: Any, objective: Any, total: int, metric: str, paths: list[str], console: Console,
               catch: tuple[type[Exception], ...] = (KdkitError, ValueError), tune: Any = None) -> None:
    """`total` trials of `study`, a line each; a trial that raises one of `catch` (a diverged loss, an invalid value)
    is recorded as failed and the search goes on. `tune`: the config's tune section, for what a family's own
    says (its metric's direction, what a trial reports after, a ``timeout`` in seconds)."""
    reporter = trial_reporter(console, metric, total, paths, None if tune is None else higher_is_better(tune),
                              getattr(tune, "step", "epoch"))
    study.optimize(objective, n_trials=total, catch=catch, callbacks=[reporter], timeout=getattr(tune, "timeout", None))


def optimize(study: Any, objective: Any, total: int, cfg: Any, space: dict[str, SearchRange], out: Path,
             raw: dict[str, Any], console: Console, alone: AloneBest | None = None) -> dict[str, Any]:
    """Run `total` trials with a line each, write trials.csv and best.yaml (also after Ctrl-C: finished trials are
    kept) and return the best values by path; a trial that diverges (NaN loss) or gets an invalid value is recorded
    as failed and the search goes on. `cfg`: any family's config (its tune and seed).
    `alone`: the student alone's best trial, whose settings best.yaml gives its row (kdkit.tune.alone)."""
    try:
        console.print(f"kdkit tune: {total} trials, each a distillation scored by validation {cfg.tune.metric}",
                      highlight=False)
        run_trials(study, objective, total, cfg.tune.metric, list(space), console, tune=cfg.tune)
    finally:
        if complete_trials(study):
            write_best(out, raw, study, cfg, space, console, alone)
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


def write_best(out: Path, raw: dict[str, Any], study: Any, cfg: Any, space: dict[str, SearchRange],
           console: Console, alone: AloneBest | None = None) -> None:
    done = complete_trials(study)
    paths = list(space)
    write_trials(out / TRIALS, study, cfg.tune.metric, paths)
    best = copy.deepcopy(raw)
    distilled = decode_params(space, dict(study.best_params))
    for path, value in distilled.items():
        set_path(best, path, value)
    if alone is not None:
        own_settings(best, cfg, distilled, alone)
    best.pop("tune", None)
    if (out / TUNE_TEACHER).is_file() and best.get("teacher", {}).get("checkpoint") is None:
        best["teacher"]["checkpoint"] = str(out / TUNE_TEACHER)  # the teacher this search trained and scored against
        best["teacher"]["train"] = {}  # trained already (a language model with train settings would fine-tune again)
    write_atomic(out / BEST, "# written by kdkit tune: the config with the best values found\n"
                 + yaml.safe_dump(best, sort_keys=False))
    states = [t.state.name for t in study.trials]
    shown = f"the best {TABLE_ROWS} of {len(done)}" if len(done) > TABLE_ROWS else f"all {len(done)}"
    table = Table(title=f"kdkit tune: validation {cfg.tune.metric}, {len(study.trials)} trials: {len(done)} complete "
                        f"({shown} below, best first), {states.count('PRUNED')} pruned, {states.count('FAIL')} failed "
                        f"(every trial: {TRIALS})")
    for column in ("trial", cfg.tune.metric, *paths):
        table.add_column(column, justify="right")
    higher = higher_is_better(cfg.tune)
    ordered = sorted(done, key=lambda t: t.value, reverse=higher)
    for t in ordered[:TABLE_ROWS]:
        table.add_row(str(t.number), f"{t.value:.4f}", *(fmt_value(t.params.get(p)) for p in paths))
    print_unwrapped(table, console)
    if alone is not None:
        console.print(summary(alone, study.best_value, cfg.tune.metric, higher),
                      highlight=False, markup=False, soft_wrap=True)
    console.print(f"best config: {out / BEST}  (run it with: kdkit train {out / BEST})")


def fmt_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
