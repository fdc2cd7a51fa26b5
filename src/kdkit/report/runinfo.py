"""What the end of a run tells its user, besides the table: the verdict with its warnings, how many processes
trained it (a torchrun run's effective batch is N times the configured one), where the best student is and the
commands that come next. Kept apart from the pipeline so `train`, `demo` and `evaluate` print the same lines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from kdkit import distributed
from kdkit.run.rundir import REPORT_HTML, REPORT_MARKDOWN, RESULTS, RunDir
from kdkit.verdict import Verdict

if TYPE_CHECKING:
    from kdkit.diagnosis import Diagnosis

STAGES = ("teacher", "student", "distill")


def training_info(cfg: Any) -> dict[str, Any]:
    """Processes and per-stage batch sizes (per process and in all), as saved in results.json's `training`."""
    n = distributed.world_size()
    batch = {stage: cfg.settings(stage).batch_size for stage in STAGES}
    return {"processes": n, "batch_size": batch, "effective_batch_size": {k: n * v for k, v in batch.items()}}


def previous_training(run_dir: Path) -> dict[str, Any] | None:
    """results.json's `training` from an earlier evaluation of the run, if any."""
    try:
        return json.loads(RunDir(run_dir).results.read_text()).get("training")
    except (OSError, ValueError, AttributeError):
        return None


def processes_note(training: dict[str, Any] | None) -> str:
    """', 2 processes, effective batch 2 x 128 = 256' for a multi-process run; '' otherwise."""
    if not training or training.get("processes", 1) <= 1:
        return ""
    n, per = training["processes"], training["batch_size"]["distill"]
    return f", {n} processes, effective batch {n} x {per} = {n * per}"


def read_verdict(run_dir: Path, results: str = RESULTS) -> Verdict | None:
    """The verdict saved in run_dir/`results` (`kdkit evaluate` writes evaluation.json), if any."""
    try:
        data = json.loads((run_dir / results).read_text()).get("verdict")
    except (OSError, ValueError, AttributeError):
        return None
    return Verdict.from_dict(data) if isinstance(data, dict) else None


def read_diagnosis(run_dir: Path, results: str = RESULTS) -> Diagnosis | None:
    """The diagnosis saved in run_dir/`results` (its rules applied again to its signals), if any."""
    from kdkit.diagnosis import Diagnosis

    try:
        data = json.loads((run_dir / results).read_text()).get("diagnosis")
        return Diagnosis.from_dict(data) if isinstance(data, dict) else None
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return None


def diagnosis_lines(diagnosis: Diagnosis, verdict: Verdict | None = None) -> list[str]:
    """The diagnosis's lines, leaving out a finding the verdict's warnings already quote."""
    said = " ".join(a.message for a in verdict.advice) if verdict is not None else ""
    head, *findings = diagnosis.lines()
    return [head] + [line for line, f in zip(findings, diagnosis.findings, strict=True) if f.message not in said]


def show_verdict(run_dir: Path, console: Console | None = None, results: str = RESULTS) -> None:
    """The verdict and its warnings, then the diagnosis (signals and advice), one line each, as plain text (a log
    file keeps them whole)."""
    verdict = read_verdict(run_dir, results)
    diagnosis = read_diagnosis(run_dir, results)
    lines = [] if verdict is None else verdict.lines()
    lines += [] if diagnosis is None else diagnosis_lines(diagnosis, verdict)
    console = console or Console()
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def best_student(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The student row with the higher test accuracy; the distilled one on a tie."""
    students = [r for r in rows if r.get("role") in ("student_kd", "student_alone")]
    return max(students, key=lambda r: (r.get("accuracy") or 0.0, r.get("role") == "student_kd"))


def show_next_steps(run_dir: Path, rows: list[dict[str, Any]], console: Console) -> None:
    """Where the best student's weights are and the commands that use them."""
    best = best_student(rows)
    role = best["role"]
    model = "" if role == "student_kd" else f" --model {role}"
    commands = [
        (f"kdkit report {run_dir}", f"{REPORT_HTML} / {REPORT_MARKDOWN}, with the verdict"),
        (f"kdkit export {run_dir}{model}", "ONNX, checked in ONNX Runtime"),
        (f"kdkit predict {run_dir} INPUTS{model}", ".npy, .csv, a folder of images or a text file"),
        (f"kdkit.load(\"{run_dir}\", model=\"{role}\")", "in Python: the model, class names, preprocessing"),
    ]
    width = max(len(c) for c, _ in commands)
    lines = [f"best student: {RunDir(run_dir).weights(role)} ({role}, test accuracy "
             f"{best['accuracy']:.4f}; class names and preprocessing in {RunDir(run_dir).meta})",
             "next:"] + [f"  {c.ljust(width)}  # {why}" for c, why in commands]
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
