"""Any run directory, whichever family wrote it (kdkit.run.rundir.run_kind tells): `kdkit.load`, `kdkit report` and
`kdkit compare` hand it to that family's reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdkit.errors import ConfigError
from kdkit.report.build import ReportFiles
from kdkit.report.compare import CompareFiles, unique_runs
from kdkit.run.rundir import ROLES


def load(run_dir: str | Path, model: str = "student_kd", device: str = "cpu") -> Any:
    """The run's `model` (teacher, student_alone or student_kd), in eval mode on `device`: a LoadedModel for a
    classification run, a kdkit.families.lm.commands.LoadedLM for a language-model run and a fitted scikit-learn
    classifier for a tabular run (kdkit.families.tabular.load.load_role)."""
    if model not in ROLES:
        raise ConfigError(f"unknown model '{model}'; choose one of: {', '.join(ROLES)}")
    from kdkit.families.base import family_of_run

    run_dir = Path(run_dir)
    return family_of_run(run_dir).load(run_dir, model, device)


def write_report(run_dir: str | Path) -> ReportFiles:
    """report.html, report.md and their figures for the run in `run_dir` (a tabular run is written in the
    classification run's contract, so the same report reads it)."""
    from kdkit.families.lm.rundir import is_lm_run

    if is_lm_run(run_dir):  # a language-model run: its own table and verdict (kdkit.families.lm.report)
        from kdkit.families.lm.report import write_lm_report

        return ReportFiles(*write_lm_report(run_dir))
    from kdkit.report.build import write_report as write_classification_report

    return write_classification_report(run_dir)


def write_compare(run_dirs: list[str | Path], output_dir: str | Path) -> CompareFiles:
    """compare.html and compare.md of several runs: language-model runs with each other, the others with each other
    (a mix is one RunDirError line)."""
    from kdkit.families.lm.report import split_kinds, write_lm_compare
    from kdkit.report.compare import write_compare as write_classification_compare

    unique = unique_runs(run_dirs)
    lm_runs = split_kinds(unique)  # language-model runs have their own table and verdict (kdkit.families.lm.report)
    if lm_runs is not None:
        html, md, verdicts, pooled = write_lm_compare(lm_runs, output_dir)
        return CompareFiles(html, md, verdicts, pooled)
    return write_classification_compare(unique, output_dir)
