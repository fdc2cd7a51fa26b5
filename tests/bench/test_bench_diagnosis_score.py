"""The diagnosis scorer's table: every cell counted once, in the row of its prediction and the column of its
measured verdict, and the share of matches judged against the target."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
score = pytest.importorskip("diagnosis_score")

from kdkit.verdict import ACCURACY, EXACT_MATCH, GAIN, LOSS, NONE, Metric  # noqa: E402


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
    assert "- matched per source: test 3 of 5." in text
    assert f"{NONE} everywhere would match 2 of 5 (40%)" in text
    assert f"{GAIN} everywhere would match 3 of 5 (60%)" in text
    assert f"- predicted right, per measured verdict: {GAIN} 2 of 3; {NONE} 1 of 2; {LOSS} 0 of 0." in text


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


# signals whose first rule is known: a teacher level with the student alone; a leading teacher with a large pool
LEVEL = {"family": "classification", "held_out": "validation split", "teacher_accuracy_held_out": 0.80,
         "alone_accuracy_held_out": 0.80}
POOL = {**LEVEL, "teacher_accuracy_held_out": 0.95, "n_train": 100, "n_pool": 300, "capacity_ratio": 10.0}


def saved_run(folder: Path, signals: dict, alone: float, kd: float, metric: Metric = ACCURACY) -> Path:
    folder.mkdir(parents=True)
    decoy = {} if metric == ACCURACY else {"accuracy": 0.0}  # the verdict's metric is read, not another one
    rows = [{"role": "teacher", metric.key: 0.9}, {"role": "student_alone", metric.key: alone},
            {"role": "student_kd", **decoy, metric.key: kd}]
    # the saved prediction is stale on purpose: the rules are applied again to the saved signals
    (folder / "results.json").write_text(json.dumps({
        "rows": rows, "verdict": {"kind": NONE, "metric": metric.words},
        "diagnosis": {"signals": signals, "predicted": LOSS, "advice": [{"rule": "stale"}]}}))
    return folder


def test_seed_runs_are_one_cell_per_folder_with_the_t_interval_of_their_paired_differences(tmp_path):
    runs = [saved_run(tmp_path / "pool" / f"seed{s}", POOL, 0.70, 0.70 + d) for s, d in enumerate((0.02, 0.03, 0.025))]
    runs += [saved_run(tmp_path / "level" / f"seed{s}", LEVEL, 0.5, 0.5 + d, EXACT_MATCH)
             for s, d in enumerate((0.02, -0.03, 0.01))]
    runs += [saved_run(tmp_path / "alone" / f"seed{s}", LEVEL, 0.5, 0.4) for s in (0, 2)]  # under MIN_SEEDS
    (tmp_path / "alone" / "seed1").mkdir()  # a run still going: no results.json yet
    runs += [tmp_path / "alone" / "seed1"]
    cells = {c.name: c for c in score.seed_run_cells(runs)}
    assert sorted(cells) == ["level", "pool"]
    assert (cells["pool"].rule, cells["pool"].predicted, cells["pool"].measured) == ("pool_with_room", GAIN, GAIN)
    assert cells["pool"].source == "pool" and score.seed_run_cells(runs[:3], "named")[0].source == "named"
    assert cells["pool"].measured_text.startswith("+2.50 (") and cells["pool"].measured_text.endswith("3 seeds")
    assert (cells["level"].rule, cells["level"].predicted, cells["level"].measured) == (
        "teacher_not_better", NONE, NONE)
    # each seed's signals and paired difference go with the cell (--signals-out), in the order of the seeds
    assert [s["n_pool"] for s in cells["pool"].signals] == [POOL["n_pool"]] * 3
    assert cells["pool"].diffs == pytest.approx([0.02, 0.03, 0.025])
    assert score.lead_text(cells["pool"]) == "+15.0" and score.lead_text(cells["level"]) == "+0.0"
    assert score.lead_text(cell(GAIN, GAIN)) == "-"  # no signals saved


def seed_file(path: Path, signals: dict, alone: float, rows: dict[str, float]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"teacher": {"accuracy": 0.99}, score.ALONE: {"accuracy": alone, "signals": signals},
                                **{row: {"accuracy": acc} for row, acc in rows.items()}}))
    return path


def test_paired_seed_files_give_one_cell_per_row_the_majority_prediction_and_skip_the_named_rows(tmp_path):
    folder = tmp_path / "bench_methods" / "digits" / "seeds-8x20"
    files = [seed_file(folder / f"seed{s}.json", sig, 0.90, {"KD": 0.90 - d, "peer": 0.95, "short": 0.9})
             for s, (sig, d) in enumerate(((LEVEL, 0.02), (LEVEL, 0.03), (POOL, 0.025)))]
    files[2].write_text(files[2].read_text().replace('"short": {"accuracy": 0.9}, ', "").replace(
        ', "short": {"accuracy": 0.9}', ""))  # a row one seed lacks: 2 paired seeds, too few to be scored
    cells = {c.name: c for c in score.paired_seed_cells(files, skip=("peer",))}
    assert sorted(cells) == ["digits: KD"]
    kd = cells["digits: KD"]
    assert (kd.source, kd.predicted, kd.measured) == ("methods", NONE, LOSS)
    assert kd.rule == "teacher_not_better (2), pool_with_room (1); 2 of 3 seeds predict it"
    assert kd.measured_text.endswith("3 seeds")


def test_a_benchmark_with_one_folder_of_seeds_names_its_cells_by_row_alone(tmp_path):
    folder = tmp_path / "bench_schemes" / "seeds-8x30"
    files = [seed_file(folder / f"seed{s}.json", POOL, 0.9, {"offline KD": 0.92 + s / 100}) for s in range(3)]
    (cell,) = score.paired_seed_cells(files)
    assert (cell.name, cell.source, cell.rule, cell.measured) == ("offline KD", "schemes", "pool_with_room", GAIN)


def test_seeds_whose_rules_differ_but_agree_on_the_verdict_predict_it_and_name_each_rule():
    certain = {**POOL, "n_pool": 0, "teacher_confidence_train": 0.99}  # teacher_certain_without_pool: no difference
    found = [score.diagnose(score.Signals.from_dict(s)) for s in (LEVEL, certain, certain)]
    cell = score.seeds_cell("c", "test", found, [0.01, -0.01, 0.0])
    assert (cell.predicted, cell.measured) == (NONE, NONE)
    assert cell.rule == "teacher_certain_without_pool (2), teacher_not_better (1)"


def test_a_tie_between_the_seeds_predictions_goes_to_no_difference_then_to_the_order_of_the_kinds():
    assert score.majority([GAIN, LOSS, NONE]) == (NONE, 1)
    assert score.majority([LOSS, GAIN]) == (GAIN, 1) and score.majority([LOSS, GAIN, LOSS]) == (LOSS, 2)
    assert score.majority([GAIN, NONE, GAIN, NONE]) == (NONE, 2)
