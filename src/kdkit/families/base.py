"""The interface every task family offers the command line: which configs and run directories are its own, and its
train / tune / evaluate / predict / export / load entry points. `kdkit` picks the family once, from the config or
the run directory, and calls it; no command asks "is this a language-model run" itself.

Each family declares one :class:`Family` in its ``family`` module (kdkit.families.<name>.family, found by
:func:`families`); the fallback family (classification) takes every config and run directory the others do not.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console

if TYPE_CHECKING:
    from kdkit.report.build import ReportFiles
    from kdkit.report.compare import CompareFiles
    from kdkit.verdict import Metric


@dataclass(frozen=True)
class Options:
    """What the commands pass on besides the config or the run directory (each family reads what applies)."""

    resume: bool = False
    overwrite: bool = False
    copy_teacher: bool = False
    quick: bool = False  # demo: a shrunk run; train and evaluate: the quick timing plan (kdkit.measure.cost)
    cost_only: bool = False
    threads: int | None = None
    max_new_tokens: int | None = None
    text_column: str | None = None
    config: Path | None = None  # train: the config file, for what lies beside it (a search's held-out rows)


class Family(Protocol):
    """One task family: its configs, its runs and its commands."""

    name: str  # the kind its run directories record (kdkit.run.rundir.run_kind)
    fallback: bool  # takes every config and run directory no other family takes
    demo_tasks: tuple[str, ...]  # the `kdkit demo --task` values it runs
    compare_group: str  # `kdkit compare` compares runs of one group only (tabular runs read as classification ones)
    # the metrics of its verdict (kdkit.verdict.Metric: what "distilled minus alone" is a difference of)
    verdict_metrics: tuple[Metric, ...]
    # its run-directory layout: the names (kdkit.run.rundir, which owns every name) its runs hold at the top level
    run_files: tuple[str, ...]

    def accepts_config(self, raw: Any) -> bool:
        """Whether a YAML config (the mapping as read) is this family's."""

    def load_config(self, path: Path, overrides: list[str], output_dir: Path | None) -> Any:
        """The validated config in `path`, overrides applied; one ConfigError line for any mistake."""

    def train(self, cfg: Any, console: Console, options: Options) -> None:
        """`kdkit train`: the teacher, the student alone and the distilled student, measured and written."""

    def tune(self, cfg: Any, trials: int | None, console: Console, storage: str | None) -> None:
        """`kdkit tune`: the search on the validation split, its best config written for `kdkit train`."""

    def evaluate(self, run_dir: Path, console: Console, options: Options) -> None:
        """`kdkit evaluate`: the saved models measured again."""

    def predict(self, run_dir: Path, inputs: Path, model: str, options: Options) -> str:
        """`kdkit predict`: the predictions of `model` for `inputs`, as the text the command prints."""

    def export(self, run_dir: Path, model: str, output: Path | None, console: Console) -> None:
        """`kdkit export`: `model` to ONNX, checked against the framework it was trained in."""

    def load(self, run_dir: Path, model: str, device: str) -> Any:
        """`kdkit.load`: the run's model, ready to predict."""

    def demo(self, task: str, output_dir: Path, console: Console, options: Options, seed: int,
             overrides: list[str]) -> None:
        """`kdkit demo --task TASK`: one of its demo_tasks, trained, measured and written like `kdkit train`."""

    def write_report(self, run_dir: Path) -> ReportFiles:
        """`kdkit report`: report.html, report.md and their figures."""

    def write_compare(self, run_dirs: list[Path], output_dir: Path) -> CompareFiles:
        """`kdkit compare`: compare.html and compare.md of runs of this family (and those it compares with)."""


_FAMILIES: list[Family] = []


def families() -> list[Family]:
    """Every family, the fallback last: each kdkit.families.<name>.family module's FAMILY."""
    if not _FAMILIES:
        package = importlib.import_module("kdkit.families")
        for module in pkgutil.iter_modules(package.__path__):
            if module.ispkg:
                found = importlib.import_module(f"kdkit.families.{module.name}.family").FAMILY
                _FAMILIES.append(found)
        _FAMILIES.sort(key=lambda f: f.fallback)
    return _FAMILIES


def family_of_config(path: Path) -> Family:
    """The family whose config `path` holds (read once here; a file that is no YAML mapping is one ConfigError)."""
    from kdkit.config.yaml import read_config

    raw = read_config(path)
    return next(f for f in families() if f.fallback or f.accepts_config(raw))


def family_of_demo(task: str) -> Family:
    """The family whose demo `task` is; an unknown task is one ConfigError line naming every family's tasks."""
    from kdkit.errors import ConfigError

    found = next((f for f in families() if task in f.demo_tasks), None)
    if found is None:
        tasks = [t for f in sorted(families(), key=lambda f: not f.fallback) for t in f.demo_tasks]
        raise ConfigError(f"unknown demo '{task}'; choose one of: {', '.join(tasks)}")
    return found


def family_of_run(run_dir: str | Path) -> Family:
    """The family that wrote `run_dir` (the kind its results.json or config.yaml records; classification else)."""
    from kdkit.run.rundir import run_kind

    kind = run_kind(run_dir)
    return next(f for f in families() if f.name == kind or f.fallback)
