"""The diagnosis scorer's table: every cell counted once, in the row of its prediction and the column of its
measured verdict, and the share of matches judged against the target."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
score = pytest.importorskip("diagnosis_score")

from kdkit.verdict import GAIN, LOSS, NONE  # noqa: E402


def cell(predicted: str, measured: str, name: str = "c") -> score.Cell:
    return score.Cell(name, "test", "rule", predicted, measured, "")


def test_the_confusion_table_counts_each_cell_in_its_row_and_column():
    cells = [cell(GAIN, GAIN), cell(GAIN, NONE), cell(NONE, NONE), cell(LOSS, GAIN), cell(GAIN, GAIN)]
    table = score.confusion(cells).splitlines()
    assert table[2] == f"| {GAIN} | 2 | 1 | 0 |"
    assert table[3] == f"| {NONE} | 0 | 1 | 0 |"
    assert table[4] == f"| {LOSS} | 1 | 0 | 0 |"
    text = score.report(cells, 1.0)
    assert "matched the measured verdict in 3 of 5 (60%)" in text and "**missed**" in text
    assert "**hit**" in score.report(cells[:1] + cells[2:3] + cells[4:], 1.0)


def test_run_directories_are_scored_from_the_diagnosis_and_verdict_they_saved(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({
        "diagnosis": {"predicted": NONE, "advice": [{"rule": "student_underfits"}]},
        "verdict": {"kind": LOSS, "headline": "Loss -1.0"}}))
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "results.json").write_text("{}")
    cells = score.run_cells([run, tmp_path / "bare"])
    assert [(c.rule, c.predicted, c.measured) for c in cells] == [("student_underfits", NONE, LOSS)]


def test_cells_the_rules_were_chosen_on_are_listed_apart_and_not_scored():
    text = score.report([cell(GAIN, GAIN)], 1.0, chosen=[cell(NONE, LOSS, "chosen")])
    assert "matched the measured verdict in 1 of 1 (100%)" in text
    assert "settings the rules were chosen on (0 of 1 matched)" in text and "| chosen |" in text
