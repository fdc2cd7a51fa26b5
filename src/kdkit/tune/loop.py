"""The one loop of `kdkit tune`, whatever the family: the family supplies a :class:`Search` (its space, how a trial
is scored, the teacher every trial shares), this module runs it: the study in ``<output_dir>/tune/`` (kdkit.tune.study),
a line per trial, a failed trial kept with its one-line error for trials.csv, and best.yaml at the end.

The order is the same for every family, so a mistake costs nothing: the search checks its space and builds its data
and models (``prepare``) before any file is written or any teacher trains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from rich.console import Console

from kdkit.errors import ConfigError, KdkitError
from kdkit.run.rundir import RunDir
from kdkit.tune.alone import AloneBest
from kdkit.tune.config import SearchRange
from kdkit.tune.space import suggest
from kdkit.tune.study import optimize, search_study


class Search(Protocol):
    """What a family gives the loop. ``cfg`` holds ``tune`` (metric, trials), ``seed`` and ``output_dir``; ``space``
    and ``raw`` (the config as a mapping, which each trial changes at its paths) are set once ``prepare`` returns.
    A family whose metrics are its own says in ``tune`` whether its metric is ``higher_is_better``; ``tune`` may also
    name its ``study`` (default "kdkit"), a ``timeout`` in seconds and the ``step`` a trial reports after (an epoch,
    a fold; see kdkit.tune.study). A family that holds rows out of the search gives them as ``held_out`` (a mapping,
    set by ``prepare``): the study keeps them, and a rerun that would hold out others is refused."""

    cfg: Any
    space: dict[str, SearchRange]
    raw: dict[str, Any]

    def prepare(self, console: Console) -> None:
        """Check every path and range end, build the data and the models; nothing written yet."""

    def train_teacher(self, out: Path, console: Console) -> None:
        """Train (or load) the teacher every trial shares, saved in `out` for best.yaml."""

    def score(self, trial: Any, values: dict[str, Any]) -> float:
        """Distil with the trial's values at their paths; the validation score (may raise optuna.TrialPruned)."""

    def alone(self, optuna: Any, out: Path, storage: str | None, total: int, console: Console) -> AloneBest | None:
        """The student alone's own search, or None when the family has none."""


def require_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError("kdkit tune needs Optuna: pip install 'kdkit[tune]'") from None
    return optuna


def first_line(err: BaseException) -> str:
    """The error as one line for trials.csv (its type when it has no message)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def run_search(search: Search, trials: int | None = None, console: Console | None = None,
               storage: str | None = None) -> dict[str, Any]:
    """Run `search`; returns the best values by path. `storage`: a database URL several workers share (default:
    SQLite in <output_dir>/tune/study.db)."""
    optuna = require_optuna()
    console = console or Console()
    search.prepare(console)
    out = RunDir(search.cfg.output_dir).tune
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = search_study(optuna, out, search.cfg, search.space, storage, held_out=getattr(search, "held_out", None))
    search.train_teacher(out, console)

    def objective(trial: Any) -> float:
        try:
            return search.score(trial, {path: suggest(trial, path, s) for path, s in search.space.items()})
        except (KdkitError, ValueError) as err:  # kept with the trial, for trials.csv
            trial.set_user_attr("error", first_line(err))
            raise

    total = trials or search.cfg.tune.trials
    alone = search.alone(optuna, out, storage, total, console)
    return optimize(study, objective, total, search.cfg, search.space, out, search.raw, console, alone)
