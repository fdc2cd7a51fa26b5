"""The diagnosis (kdkit.diagnosis) of a run directory, for `kdkit report` and `kdkit diagnose`: the signals as a
table, the verdict the rules predict next to the one measured, and every finding with its next step.

A run saves its signals in results.json (`diagnosis`); the rules are applied to them again when they are read, so
the advice shown is always the current rules'. A classification run written before signals were saved gets them
from predictions.npz, with the test split standing in for held-out data (said in a note).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdkit.diagnosis import Diagnosis, Signals, Split, capacity_ratio, diagnose, prediction_signals
from kdkit.errors import RunDirError
from kdkit.report.document import Section, Table, Text
from kdkit.verdict import Verdict

TITLE = "Diagnosis: why distillation paid, or not"
EXPLAIN = ("Signals measured without the test split, on the inputs the student learns from and on held-out inputs, "
           "and the rules that read them (README \"Why it paid, or not: the diagnosis\"). Each rule that applies gives "
           "its reason and next step; the first one gives the verdict the rules predict.")
# (label, signal on the training inputs, signal held out, number format, what it tells)
SIGNALS = (
    ("student alone: accuracy", "alone_accuracy_train", "alone_accuracy_held_out", "{:.4f}",
     "about equal and far below the teacher: the student is limited by its size or training; a gap: it overfits, "
     "and more (teacher-labelled) inputs help"),
    ("teacher: accuracy", None, "teacher_accuracy_held_out", "{:.4f}",
     "no better than the student alone: nothing to teach"),
    ("teacher: mean top probability", "teacher_confidence_train", "teacher_confidence_held_out", "{:.4f}",
     "near 1 where the student learns: its soft labels there are nearly the labels; far from its accuracy: "
     "miscalibrated"),
    ("teacher: mean entropy (nats)", "teacher_entropy_train", "teacher_entropy_held_out", "{:.3f}",
     "how much the soft labels say beyond the top class"),
    ("agreement with the teacher: student alone", "agreement_alone_train", "agreement_alone_held_out", "{:.4f}",
     "how far the labels alone bring the student towards the teacher"),
    ("agreement with the teacher: distilled student", "agreement_kd_train", "agreement_kd_held_out", "{:.4f}",
     "high where it was shown the teacher, low held out: it imitates the teacher only there"),
)


@dataclass
class RunDiagnosis:
    """A run directory's diagnosis with the verdict it measured (None when results.json has none)."""

    diagnosis: Diagnosis
    verdict: Verdict | None
    kind: str  # classification, lm or tabular


def _cell(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def signals_table(s: Signals) -> Table:
    """The per-split signals, then the sizes, one row each."""
    rows = [[label, _cell(getattr(s, train) if train else None, fmt), _cell(getattr(s, held), fmt), why]
            for label, train, held, fmt, why in SIGNALS]
    pool = f"{s.n_pool:,} ({s.pool_ratio:.1f}x the labelled set)" if s.n_pool else "none"
    rows += [["teacher / student parameters", _cell(s.capacity_ratio, "{:.1f}x"), "", "under 2x: little to buy"],
             ["unlabelled inputs the teacher labels", pool, "",
              "where the teacher's knowledge shows beyond the labels"]]
    if s.teacher_only_inputs:
        rows.append(["columns only the teacher sees", str(s.teacher_only_inputs), "",
                     "what the student cannot imitate"])
    per = {"tokens": ", per labelled token", "rows": ", per row"}.get(s.unit, "")
    sizes = f"{s.n_train:,} labelled training inputs, " if s.n_train else ""
    return Table(["signal", "training inputs", s.held_out, "what it tells"], rows,
                 caption=f"{sizes}{s.n_held_out or 0:,} held-out {s.unit} ({s.held_out}){per}")


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


def _results(run_dir: Path) -> dict[str, Any]:
    try:
        results = json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError) as err:
        raise RunDirError(f"{run_dir}/results.json cannot be read ({err}); give a run directory written by kdkit "
                          "(`kdkit demo`, `kdkit train`, `kdkit tabular fit`)") from None
    if not isinstance(results, dict):
        raise RunDirError(f"{run_dir}/results.json is not a kdkit results file")
    return results


def from_predictions(run: Any) -> Diagnosis:
    """A classification run without saved signals (report.rundir's RunData): labelled rows of its distillation-data
    predictions are the training inputs, unlabelled ones the pool, and the test split stands in for held-out data."""
    train, n_train, n_pool = None, None, 0
    if run.train is not None:
        keep = run.train.labelled
        train = Split({r: logits[keep] for r, logits in run.train.logits.items()}, run.train.labels[keep])
        n_train, n_pool = int(keep.sum()), int((~keep).sum())
    signals = prediction_signals("classification", "test split", train, Split(run.test.logits, run.test.labels),
                                 n_train=n_train, n_pool=n_pool, capacity_ratio=capacity_ratio(run.rows),
                                 notes=["this run saved no diagnosis: the signals come from predictions.npz, with "
                                        "the test split (the verdict's) standing in for held-out data"])
    return diagnose(signals)


def from_results(results: dict[str, Any], run: Any = None) -> RunDiagnosis | None:
    """The diagnosis results.json holds, with its verdict; else, for a classification run read by report.rundir
    (`run`), one computed from its predictions; else None."""
    kind = str(results.get("kind") or "classification")
    saved, verdict = results.get("diagnosis"), results.get("verdict")
    verdict = Verdict.from_dict(verdict) if isinstance(verdict, dict) else None
    if isinstance(saved, dict) and isinstance(saved.get("signals"), dict):
        return RunDiagnosis(Diagnosis.from_dict(saved), verdict, kind)
    if kind == "classification" and run is not None:
        return RunDiagnosis(from_predictions(run), verdict, kind)
    return None


def load_diagnosis(run_dir: str | Path) -> RunDiagnosis:
    """The diagnosis of any run directory (classification, language model, tabular); RunDirError when it has
    none and cannot be computed from its files."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run directory not found: {run_dir}")
    results = _results(run_dir)
    found = from_results(results)
    if found is not None:
        return found
    if results.get("kind") not in (None, "classification"):
        raise RunDirError(f"{run_dir}/results.json has no diagnosis (written by an older kdkit); run it again to "
                          "add one")
    from kdkit.report.rundir import load_run

    found = from_results(results, load_run(run_dir))
    assert found is not None  # a classification run always gets one from its predictions
    return found


def diagnosis_text(run: RunDiagnosis) -> list[str]:
    """`kdkit diagnose`'s lines: the signals table as aligned text, the prediction against the verdict, the
    findings."""
    table = signals_table(run.diagnosis.signals)
    rows = [table.headers[:3], *(row[:3] for row in table.rows)]
    widths = [max(len(str(row[i])) for row in rows) for i in range(3)]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.append(f"({table.caption})")
    measured = f"; measured: {run.verdict.headline}" if run.verdict is not None else ""
    lines.append(f"predicted by the rules: {run.diagnosis.predicted}{measured}")
    lines += [f"[{f.rule}, predicts {f.predicts}] {f.text()}" for f in run.diagnosis.findings]
    return lines + [f"note: {note}" for note in run.diagnosis.signals.notes]


__all__ = ["RunDiagnosis", "diagnosis_section", "diagnosis_text", "from_results", "load_diagnosis", "signals_table"]
