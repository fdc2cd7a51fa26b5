"""Any run directory, whichever family wrote it (kdkit.run.rundir.run_kind tells): `kdkit.load`, `kdkit report` and
`kdkit compare` hand it to that family's (kdkit.families.base.Family) reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdkit.errors import ConfigError, RunDirError
from kdkit.families.base import families, family_of_run
from kdkit.report.build import ReportFiles
from kdkit.report.compare import CompareFiles, unique_runs
from kdkit.run.rundir import ROLES


def load(run_dir: str | Path, model: str = "student_kd", device: str = "cpu") -> Any:
    """The run's `model` (teacher, student_alone or student_kd), in eval mode on `device`: a LoadedModel for a
    classification run, a kdkit.families.lm.commands.LoadedLM for a language-model run and a fitted scikit-learn
    classifier for a tabular run (kdkit.families.tabular.load.load_role)."""
    if model not in ROLES:
        raise ConfigError(f"unknown model '{model}'; choose one of: {', '.join(ROLES)}")
    run_dir = Path(run_dir)
    return family_of_run(run_dir).load(run_dir, model, device)


def write_report(run_dir: str | Path) -> ReportFiles:
    """report.html, report.md and their figures for the run in `run_dir`, by the family that wrote it."""
    return family_of_run(run_dir).write_report(Path(run_dir))


def write_compare(run_dirs: list[str | Path], output_dir: str | Path) -> CompareFiles:
    """compare.html and compare.md of several runs, by their family: runs of one comparison group only (language-model
    runs with each other, classification and tabular runs with each other; a mix is one RunDirError line)."""
    unique = unique_runs(run_dirs)
    groups: dict[str, list[Path]] = {}
    for run in unique:
        groups.setdefault(family_of_run(run).compare_group, []).append(run)
    if len(groups) > 1:
        usual = next(f.compare_group for f in families() if f.fallback)
        special = next(g for g in groups if g != usual)
        other = next(g for g in groups if g != special)
        raise RunDirError(f"{groups[other][0]} is not a {special} run but {groups[special][0]} is; compare {special} "
                          f"runs with each other and {other} runs with each other")
    return family_of_run(unique[0]).write_compare(unique, Path(output_dir))
