"""The verdict: a paired difference with an interval, worded gain / no measurable difference / loss, with warnings
and next steps; printed after the table, saved in results.json, shown by `kdkit report` and `kdkit compare`."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from scipy import stats

from kdkit.cli import main
from kdkit.families.classification.demo import demo_config
from kdkit.families.classification.pipeline import run
from kdkit.report.compare import write_compare
from kdkit.report.runinfo import processes_note
from kdkit.verdict import (
    GAIN,
    LOSS,
    NONE,
    Verdict,
    advise,
    correct_per_unit,
    paired_bootstrap,
    run_verdict,
    seeds_interval,
    seeds_verdict,
)


def _logits(labels: np.ndarray, right: np.ndarray, classes: int = 4) -> np.ndarray:
    """Logits that predict the label where `right` is true and the next class elsewhere."""
    pred = np.where(right, labels, (labels + 1) % classes)
    return np.eye(classes)[pred] * 5.0


def test_bootstrap_is_paired_and_seeded():
    rng = np.random.default_rng(0)
    n = 1000
    alone = rng.random(n) < 0.7
    kd = alone.copy()
    kd[np.flatnonzero(~alone)[:30]] = True  # +3 points, every change in the same direction
    totals = np.ones(n)
    diff, low, high = paired_bootstrap(kd.astype(float), alone.astype(float), totals)
    assert diff == pytest.approx(0.03)
    assert 0 < low < 0.03 < high < 0.05  # paired: 30 one-way changes are a clear gain
    assert paired_bootstrap(kd.astype(float), alone.astype(float), totals) == (diff, low, high)
    # the same 3 points from two independent students are not distinguishable from noise on 1,000 samples
    other = rng.random(n) < 0.73
    _, low2, high2 = paired_bootstrap(other.astype(float), alone.astype(float), totals)
    assert low2 < 0 < high2 or high2 - low2 > 3 * (high - low)


@pytest.mark.parametrize(("flip", "kind"), [(60, GAIN), (0, NONE), (-60, LOSS)])
def test_run_verdict_words(flip, kind):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 2000)
    alone = rng.random(2000) < 0.6
    kd = alone.copy()
    idx = np.flatnonzero(~alone if flip > 0 else alone)[: abs(flip)]
    kd[idx] = flip > 0
    logits = {"teacher": _logits(labels, np.ones(2000, bool)), "student_alone": _logits(labels, alone),
              "student_kd": _logits(labels, kd)}
    rows = [{"role": "teacher", "accuracy": 1.0}, {"role": "student_alone", "accuracy": alone.mean()},
            {"role": "student_kd", "accuracy": kd.mean(), "speedup": 5.0}]
    verdict = run_verdict(logits, labels, rows, n_val=1000, keep="best")
    assert verdict.kind == kind
    assert verdict.difference == pytest.approx(flip / 2000)
    codes = {a.code for a in verdict.advice}
    assert codes == ({"loss"} if kind == LOSS else {"no_difference"} if kind == NONE else set())
    assert verdict.headline.startswith({GAIN: "Gain", NONE: "No measurable", LOSS: "Loss"}[kind])
    assert Verdict.from_dict(json.loads(json.dumps(verdict.as_dict()))) == verdict


def test_tagging_resamples_sentences():
    labels = np.array([[0, 1, -1], [1, -1, -1]])
    logits = np.eye(2)[[[0, 0, 0], [1, 1, 1]]]
    correct, total = correct_per_unit(logits, labels)
    assert correct.tolist() == [1, 1] and total.tolist() == [2, 1]


def test_warnings_and_their_next_steps():
    rows = {"teacher": {"accuracy": 0.80}, "student_alone": {"accuracy": 0.82},
            "student_kd": {"accuracy": 0.83, "speedup": 0.9}}
    codes = [a.code for a in advise(GAIN, rows, teacher_low=-0.01, n_val=400, keep="best")]
    assert codes == ["teacher_not_better", "not_faster", "small_val"]
    assert advise(GAIN, rows, teacher_low=0.01, n_val=400, keep="last") == advise(GAIN, rows, 0.01, 5000, "best")
    for advice in advise(LOSS, rows, teacher_low=-0.01, n_val=400, keep="best"):
        assert advice.next_step and advice.text().endswith(f"See {advice.section}.")
        assert advice.section.startswith("docs/")  # tests/docs/test_doc_examples.py checks that every such page exists
    loss = advise(LOSS, rows)[0]
    assert all(word in loss.next_step for word in ("kdkit tune", "transfer", "train.augment"))


def test_a_teacher_worse_than_the_student_alone_is_called_worse():
    """A teacher 4.4 points below the student alone is not 'not measurably better': it is worse, by 4.4 points."""
    rows = {"teacher": {"accuracy": 0.8690}, "student_alone": {"accuracy": 0.9130}, "student_kd": {"accuracy": 0.9}}
    texts = {interval: next(a.message for a in advise(NONE, rows, *interval) if a.code == "teacher_not_better")
             for interval in [(-0.06, None, None, -0.03), (-0.06, None, None, 0.01), (None, None, None, None)]}
    worse = "The teacher (0.8690) is 4.4 points worse than the student alone (0.9130), so it has nothing to teach."
    assert texts[(-0.06, None, None, -0.03)] == worse  # the whole interval of teacher minus alone below 0
    assert texts[(-0.06, None, None, 0.01)] == ("The teacher (0.8690) is not measurably better than the student "
                                                "alone (0.9130), so it has little to teach.")
    assert texts[(None, None, None, None)] == worse  # no interval: the two scores as they are
    rows["teacher"]["accuracy"] = 0.95
    assert "teacher_not_better" not in {a.code for a in advise(NONE, rows, 0.01, None, None, 0.06)}


def test_a_speedup_whose_timing_spreads_overlap_is_not_taken_as_faster():
    rows = {"teacher": {"accuracy": 0.90}, "student_alone": {"accuracy": 0.80},
            "student_kd": {"accuracy": 0.85, "speedup": 3.0, "speedup_certain": False}}
    (advice,) = [a for a in advise(GAIN, rows, teacher_low=0.05) if a.code == "not_faster"]
    assert "not measurably faster" in advice.text() and "--cost-only" in advice.next_step
    rows["student_kd"]["speedup_certain"] = True
    assert "not_faster" not in {a.code for a in advise(GAIN, rows, teacher_low=0.05)}


def test_seeds_interval_is_a_t_interval():
    diffs = [0.05, 0.07, 0.04, 0.06]
    mean, low, high, sem = seeds_interval(diffs)
    expected = stats.t.interval(0.95, 3, loc=np.mean(diffs), scale=stats.sem(diffs))
    assert (low, high) == pytest.approx(expected) and sem == pytest.approx(stats.sem(diffs))
    assert seeds_verdict(diffs).kind == GAIN
    assert seeds_verdict([0.01, -0.02, 0.02]).kind == NONE
    single = seeds_verdict([0.05])
    assert single.kind == NONE and "no interval" in single.headline


@pytest.fixture(scope="module")
def quick_run(demo_quick_copy) -> Path:
    return demo_quick_copy("verdict")  # `kdkit demo --quick`, seed 0


def test_cli_prints_the_verdict_after_the_table_and_the_next_steps_last(demo_quick):
    run_dir, out = demo_quick  # the session's `kdkit demo --quick`, as printed
    table_end = out.index("distilled student │")
    assert table_end < out.index("verdict: ") < out.index("best student: ")
    saved = json.loads((run_dir / "results.json").read_text())["verdict"]
    assert f"verdict: {saved['headline']}" in out
    last = out.strip().splitlines()[-6:]
    assert last[0].startswith(f"best student: {run_dir / 'models'}")
    assert [line.split()[:2] for line in last[2:5]] == [["kdkit", "report"], ["kdkit", "export"],
                                                         ["kdkit", "predict"]]


def test_results_and_report_carry_the_verdict(quick_run):
    results = json.loads((quick_run / "results.json").read_text())
    verdict = Verdict.from_dict(results["verdict"])
    rows = {r["role"]: r for r in results["rows"]}
    assert verdict.difference == pytest.approx(rows["student_kd"]["accuracy"] - rows["student_alone"]["accuracy"])
    assert verdict.low <= verdict.difference <= verdict.high
    assert results["data"]["n_val"] == 400 and results["training"]["processes"] == 1
    main_report = __import__("kdkit.report.build", fromlist=["write_report"]).write_report(quick_run)
    md = main_report.markdown.read_text()
    section = md[md.index("## Verdict"):]
    assert section.index(verdict.headline) < section.index("## ", 3)
    assert "keep: best" not in section  # the demo ends at its last epoch: its 400 validation samples are too few
    assert verdict.headline in main_report.html.read_text()


def test_compare_pairs_seeds_and_states_processes(quick_run, tmp_path):
    second = tmp_path / "seed1"
    run(demo_config(seed=1, output_dir=second, quick=True), console=Console(file=io.StringIO()), quick_cost=True)
    first = tmp_path / "seed0"
    shutil.copytree(quick_run, first, ignore=shutil.ignore_patterns("checkpoints", "report*"))
    results = json.loads((second / "results.json").read_text())
    results["training"] = {"processes": 2, "batch_size": {"teacher": 128, "student": 128, "distill": 256},
                           "effective_batch_size": {"teacher": 256, "student": 256, "distill": 512}}
    (second / "results.json").write_text(json.dumps(results))
    files = write_compare([first, second], tmp_path / "cmp")
    md = files.markdown.read_text()
    diffs = []
    for d in (first, second):
        rows = {r["role"]: r for r in json.loads((d / "results.json").read_text())["rows"]}
        diffs.append(rows["student_kd"]["accuracy"] - rows["student_alone"]["accuracy"])
    expected = seeds_verdict(diffs)
    row = next(line for line in md.splitlines() if line.startswith("| A | 2 |"))
    assert f"0: {100 * diffs[0]:+.1f}, 1: {100 * diffs[1]:+.1f}" in row and expected.kind in row
    assert f"{100 * expected.difference:+.1f}" in row
    assert "1 x 256 = 256, 2 x 256 = 512" in md
    assert files.verdicts == [f"A (cnn1d -> mlp): {expected.headline}"]
    assert processes_note(results["training"]) == ", 2 processes, effective batch 2 x 256 = 512"
    assert processes_note({"processes": 1}) == ""


def test_evaluate_says_what_it_measures_and_prints_the_verdict(quick_run, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(quick_run, copy, ignore=shutil.ignore_patterns("checkpoints", "report*"))
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(["evaluate", str(copy), "--quick"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.index("evaluating teacher: predictions on 1,000 test samples") < out.index("distilled student │")
    verdict = json.loads((copy / "evaluation.json").read_text())["verdict"]
    assert f"verdict: {verdict['headline']}" in out
    assert verdict == json.loads((copy / "results.json").read_text())["verdict"]  # the same models, the same verdict
