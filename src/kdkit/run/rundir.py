"""The run directory every family writes: its models' roles with their printed labels, the results format, and which
family wrote a run.

    teacher          the teacher
    student_alone    the same student trained on the labels alone (the baseline)
    student_kd       the distilled student
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

ROLES = ("teacher", "student_alone", "student_kd")
STUDENTS = ("student_alone", "student_kd")
LABELS = {"teacher": "teacher", "student_alone": "student alone", "student_kd": "distilled student"}
RESULTS_FORMAT = 1  # the results.json format the families write and the readers understand


def run_kind(run_dir: str | Path) -> str:
    """'lm', 'tabular' or 'classification', from the run's results.json or config.yaml (classification when neither
    says otherwise, so the classification reader gives its own error for a damaged directory)."""
    run_dir = Path(run_dir)
    for name, read in (("results.json", json.loads), ("config.yaml", yaml.safe_load)):
        try:
            kind = read((run_dir / name).read_text(encoding="utf-8")).get("kind")
        except (OSError, ValueError, AttributeError, yaml.YAMLError):
            continue
        if kind in ("lm", "tabular"):
            return kind
    return "classification"
