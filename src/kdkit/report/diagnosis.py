"""The diagnosis (kdkit.diagnosis) of a run directory: read from its results.json (or, for a classification run
written before signals were saved, computed from its predictions), printed by `kdkit diagnose` and laid out as a report
section: the signals as a table, the verdict the rules predict next to the one measured, and every finding with its
next step. The numbers and words come from kdkit.diagnosis; this file reads and lays them out."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdkit.diagnosis import Diagnosis, Signals, Split, capacity_ratio, diagnose, prediction_signals, signal_rows
from kdkit.errors import RunDirError
from kdkit.report.document import Section, Table, Text
from kdkit.report.rundir import load_run
from kdkit.run.rundir import PREDICTIONS, RunDir
from kdkit.verdict import Verdict


@dataclass
class RunDiagnosis:
    """A run directory's diagnosis with the verdict it measured (None when results.json has none)."""

    diagnosis: Diagnosis
    verdict: Verdict | None
    kind: str  # classification, lm or tabular


def from_results(results: Mapping[str, Any], run: Any = None) -> RunDiagnosis | None:
    """The diagnosis results.json holds (its rules applied again), with its verdict; else, for a classification
    run read by kdkit.report.rundir (`run`), one computed from its predictions; else None."""
    kind = str(results.get("kind") or "classification")
    saved, verdict = results.get("diagnosis"), results.get("verdict")
    try:
        verdict = Verdict.from_dict(verdict) if isinstance(verdict, dict) else None
        if isinstance(saved, dict) and isinstance(saved.get("signals"), dict):
            return RunDiagnosis(Diagnosis.from_dict(saved), verdict, kind)
    except (TypeError, ValueError, KeyError):  # a hand-edited or damaged entry: as if there were none
        verdict = None
    if kind == "classification" and run is not None:
        return RunDiagnosis(from_predictions(run), verdict, kind)
    return None


def from_predictions(run: Any) -> Diagnosis:
    """A classification run without saved signals (kdkit.report.rundir's RunData): the labelled rows of its
    distillation-data predictions are the training inputs, the unlabelled ones the pool, and the test split
    stands in for held-out data."""
    train, n_train, n_pool = None, None, 0
    if run.train is not None:
        keep = run.train.labelled
        train = Split({r: logits[keep] for r, logits in run.train.logits.items()}, run.train.labels[keep])
        n_train, n_pool = int(keep.sum()), int((~keep).sum())
    signals = prediction_signals("classification", "test split", train, Split(run.test.logits, run.test.labels),
                                 n_train=n_train, n_pool=n_pool, capacity_ratio=capacity_ratio(run.rows),
                                 notes=[f"this run saved no diagnosis: the signals come from {PREDICTIONS}, with "
                                        "the test split (the verdict's) standing in for held-out data"])
    return diagnose(signals)


def load_diagnosis(run_dir: str | Path) -> RunDiagnosis:
    """The diagnosis of any run directory (classification, language model, tabular); RunDirError when it has none
    and none can be computed from its files. Reads results.json alone unless it must fall back to predictions."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run directory not found: {run_dir}")
    try:
        results = json.loads(RunDir(run_dir).results.read_text())
    except (OSError, ValueError) as err:
        raise RunDirError(f"{RunDir(run_dir).results} cannot be read ({err}); give a run directory written by kdkit "
                          "(`kdkit demo`, `kdkit train`, `kdkit tabular fit`)") from None
    if not isinstance(results, dict):
        raise RunDirError(f"{RunDir(run_dir).results} is not a kdkit results file")
    found = from_results(results)
    if found is None and results.get("kind") in (None, "classification"):
        found = from_results(results, load_run(run_dir))
    if found is None:
        raise RunDirError(f"{RunDir(run_dir).results} has no diagnosis (written by an older kdkit); run it again to "
                          "add one")
    return found


def diagnosis_text(run: RunDiagnosis) -> list[str]:
    """`kdkit diagnose`'s lines: the signals as aligned columns, the prediction against the measured verdict, the
    findings, the notes."""
    headers, rows, caption = signal_rows(run.diagnosis.signals)
    cells = [headers[:3], *(row[:3] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.append(f"({caption})")
    measured = f"; measured: {run.verdict.headline}" if run.verdict is not None else ""
    lines.append(f"predicted by the rules: {run.diagnosis.predicted}{measured}")
    lines += [f"[{f.rule}, predicts {f.predicts}] {f.text()}" for f in run.diagnosis.findings]
    return lines + [f"note: {note}" for note in run.diagnosis.signals.notes]


TITLE = "Diagnosis: why distillation paid, or not"
EXPLAIN = ("Signals measured without the test split, on the inputs the student learns from and on held-out inputs, "
           "and the rules that read them (docs/results.md#why-it-paid-or-not-the-diagnosis). Each rule that applies "
           "gives its reason and next step; the first one gives the verdict the rules predict.")


def signals_table(s: Signals) -> Table:
    headers, rows, caption = signal_rows(s)
    return Table(headers, rows, caption=caption)


def diagnosis_blocks(run: RunDiagnosis) -> list[Any]:
    """The report's blocks: what the signals are, the table, prediction against measurement, the findings."""
    d = run.diagnosis
    measured = f"; the verdict measured: {run.verdict.kind}" if run.verdict is not None else ""
    blocks: list[Any] = [Text(EXPLAIN), signals_table(d.signals),
                         Text(f"The rules predict: {d.predicted}{measured}.")]
    blocks += [Text(f"[{f.rule}, predicts {f.predicts}] {f.text()}", note=True) for f in d.findings]
    return blocks + [Text(note, note=True) for note in d.signals.notes]


def diagnosis_section(run: RunDiagnosis | None) -> Section:
    if run is None:
        return Section(TITLE, [Text("This run saved no diagnosis signals; run it again with this kdkit to add them.",
                                    note=True)])
    return Section(TITLE, diagnosis_blocks(run))


__all__ = ["RunDiagnosis", "diagnosis_section", "diagnosis_text", "from_predictions", "from_results", "load_diagnosis",
           "signals_table"]
