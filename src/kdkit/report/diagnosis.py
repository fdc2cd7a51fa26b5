"""The diagnosis (kdkit.diagnosis) as a report section: the signals as a table, the verdict the rules predict next
to the one measured, and every finding with its next step. The numbers and words come from kdkit.diagnosis, which
`kdkit diagnose` prints as text; this file only lays them out."""

from __future__ import annotations

from typing import Any

from kdkit.diagnosis import RunDiagnosis, Signals, signal_rows
from kdkit.report.document import Section, Table, Text

TITLE = "Diagnosis: why distillation paid, or not"
EXPLAIN = ("Signals measured without the test split, on the inputs the student learns from and on held-out inputs, "
           "and the rules that read them (README \"Why it paid, or not: the diagnosis\"). Each rule that applies gives "
           "its reason and next step; the first one gives the verdict the rules predict.")


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


__all__ = ["diagnosis_section", "signals_table"]
