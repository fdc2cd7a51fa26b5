"""The diagnosis: signals measured in every run (teacher confidence, student fit, agreement, sizes) and the rules
that read them, each on constructed signals on both sides of its thresholds; then a tiny run end to end through
results.json, the printed verdict, the report and `kdkit diagnose`."""

from __future__ import annotations

import dataclasses
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from kdkit import diagnosis as dx
from kdkit.cli import main
from kdkit.diagnosis import Diagnosis, Signals, Split, diagnose, prediction_signals
from kdkit.verdict import GAIN, NONE


def signals(**changes: object) -> Signals:
    """A run in which no rule but the calibrated-teacher one applies: the teacher leads by 10 points, is calibrated
    and unsure on the training inputs, the student alone overfits, 10x fewer parameters, no pool."""
    base = Signals(family="classification", held_out="validation split", teacher_accuracy_held_out=0.90,
                   alone_accuracy_train=0.95, alone_accuracy_held_out=0.80, teacher_confidence_train=0.90,
                   teacher_confidence_held_out=0.88, capacity_ratio=10.0, n_train=1000, n_pool=0)
    return dataclasses.replace(base, **changes)


def rules_of(s: Signals) -> list[str]:
    return [f.rule for f in diagnose(s).findings]


def test_the_base_case_is_the_informative_teacher() -> None:
    d = diagnose(signals())
    assert rules_of(signals()) == ["soft_labels_informative"] and d.predicted == GAIN


@pytest.mark.parametrize(("lead", "fires"), [(dx.TEACHER_LEAD_MIN - 0.001, True), (dx.TEACHER_LEAD_MIN + 0.001, False),
                                             (-0.05, True)])
def test_teacher_not_better(lead: float, fires: bool) -> None:
    s = signals(teacher_accuracy_held_out=0.80 + lead, teacher_confidence_held_out=0.80 + lead)
    assert ("teacher_not_better" in rules_of(s)) == fires
    if fires:
        assert diagnose(s).findings[0].rule == "teacher_not_better" and diagnose(s).predicted == NONE
        assert "pretrained" in diagnose(s).findings[0].next_step


def test_a_teacher_two_points_ahead_predicts_no_gain_even_with_a_pool() -> None:
    """Leads of 1.8 to 2.8 points in the regime map gave one gain in 8 cells: too little to show over a few seeds."""
    s = signals(teacher_accuracy_held_out=0.82, teacher_confidence_held_out=0.82, n_pool=56_000)
    assert rules_of(s)[:2] == ["teacher_not_better", "pool_with_room"] and diagnose(s).predicted == NONE


@pytest.mark.parametrize(("ratio", "fires"), [(1.5, True), (dx.SIMILAR_SIZE, False), (None, False)])
def test_similar_size(ratio: float | None, fires: bool) -> None:
    assert ("similar_size" in rules_of(signals(capacity_ratio=ratio))) == fires


@pytest.mark.parametrize(("train", "held", "fires"), [
    (0.81, 0.80, True),  # train ~ held-out, 9 points below the teacher: capacity-bound
    (0.84, 0.80, False),  # a 4-point gap: it overfits, so more (teacher-labelled) inputs can help
    (0.885, 0.88, False),  # no gap, but within 3 points of the teacher (0.90): not far below it
])
def test_student_underfits(train: float, held: float, fires: bool) -> None:
    s = signals(alone_accuracy_train=train, alone_accuracy_held_out=held)
    assert ("student_underfits" in rules_of(s)) == fires
    if fires:
        assert diagnose(s).predicted == NONE and "larger student" in diagnose(s).findings[0].next_step


def test_an_underfitting_student_outranks_a_pool() -> None:
    """A capacity-bound student gains nothing from more inputs (the bag-of-words student of bench/text)."""
    s = signals(alone_accuracy_train=0.80, alone_accuracy_held_out=0.80, n_pool=5000)
    assert rules_of(s)[:2] == ["student_underfits", "pool_with_room"] and diagnose(s).predicted == NONE


@pytest.mark.parametrize(("pool", "fires"), [(999, False), (1000, True), (15_600, True)])
def test_pool_with_room(pool: int, fires: bool) -> None:
    s = signals(n_pool=pool, teacher_confidence_train=0.99, teacher_confidence_held_out=0.90)
    assert ("pool_with_room" in rules_of(s)) == fires
    assert diagnose(s).predicted == (GAIN if fires else NONE)
    assert s.pool_ratio == pytest.approx(pool / 1000)


@pytest.mark.parametrize(("confidence", "pool", "fires"), [(0.96, 0, True), (dx.CERTAIN, 500, True),
                                                           (0.94, 0, False), (0.99, 1000, False)])
def test_teacher_certain_without_pool(confidence: float, pool: int, fires: bool) -> None:
    s = signals(teacher_confidence_train=confidence, n_pool=pool)
    assert ("teacher_certain_without_pool" in rules_of(s)) == fires
    if fires:
        assert diagnose(s).predicted == NONE and "data.transfer_size" in diagnose(s).findings[0].next_step


@pytest.mark.parametrize(("confidence", "fires"), [(0.90 - dx.CALIBRATION_GAP - 0.01, True), (0.87, False),
                                                   (0.90 + dx.CALIBRATION_GAP, True)])
def test_teacher_miscalibrated_and_then_its_soft_labels_do_not_count(confidence: float, fires: bool) -> None:
    s = signals(teacher_confidence_held_out=confidence)
    assert ("teacher_miscalibrated" in rules_of(s)) == fires
    assert ("soft_labels_informative" in rules_of(s)) != fires
    assert diagnose(s).predicted == (NONE if fires else GAIN)


def test_privileged_columns_and_family_specific_next_steps() -> None:
    s = signals(family="tabular", held_out="held-out rows", teacher_only_inputs=4)
    first = diagnose(s).findings[0]
    assert first.rule == "privileged_columns" and "kdkit tabular tune" in first.next_step
    lm = diagnose(signals(family="lm", teacher_confidence_train=0.99))
    assert "data.n_transfer" in lm.findings[0].next_step


def test_missing_signals_skip_their_rules_and_the_catch_all_remains() -> None:
    bare = Signals(family="classification", held_out="validation split")
    d = diagnose(bare)
    assert [f.rule for f in d.findings] == ["no_known_cause"] and d.predicted == NONE


def test_every_rule_names_its_evidence_and_every_threshold_is_named_once() -> None:
    for rule in (*dx.RULES, dx.no_known_cause):
        assert "Evidence" in (rule.__doc__ or ""), rule.__name__
    source = Path(dx.__file__).read_text()
    for name in ("TEACHER_LEAD_MIN", "SIMILAR_SIZE", "UNDERFIT_GAP", "CAPACITY_SHORTFALL", "POOL_MIN", "CERTAIN",
                 "CALIBRATION_GAP"):
        assert source.count(f"\n{name} = ") == 1


def test_the_verdict_warning_quotes_the_first_finding() -> None:
    from kdkit.verdict import LOSS, WHY_SECTION, not_paid

    cause = diagnose(signals(teacher_confidence_train=0.99)).findings[0]
    (warning,) = not_paid(NONE, cause)
    assert warning.message == f"Distillation made no measurable difference. Diagnosis: {cause.message}"
    assert warning.next_step == cause.next_step and warning.section == WHY_SECTION
    expected = diagnose(signals(n_pool=5000)).findings[0]  # predicted a gain, measured a loss
    (warning,) = not_paid(LOSS, expected)
    assert "The diagnosis expected a gain: The teacher labels 5.0x" in warning.message
    assert not_paid(GAIN, cause) == [] and "kdkit tune" in not_paid(NONE)[0].next_step


def test_signals_round_trip_and_the_saved_advice_is_recomputed() -> None:
    d = diagnose(signals(n_pool=3000))
    data = json.loads(json.dumps(d.as_dict()))
    assert data["predicted"] == GAIN and data["signals"]["pool_ratio"] == 3.0
    again = Diagnosis.from_dict(data)
    assert again == d
    data["signals"]["n_pool"] = 0  # the rules read the signals, not the advice saved beside them
    assert Diagnosis.from_dict(data).predicted == GAIN and "pool_with_room" not in rules_of(
        Diagnosis.from_dict(data).signals)


def test_confidence_is_the_mean_top_probability_and_entropy() -> None:
    uniform = np.zeros((4, 5))
    assert dx.confidence(uniform) == pytest.approx((0.2, math.log(5)))
    logits = np.array([[0.0, math.log(3.0)], [math.log(3.0), 0.0]])  # p = (1/4, 3/4) and (3/4, 1/4)
    entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert dx.confidence(logits) == pytest.approx((0.75, entropy))


def test_prediction_signals_count_labelled_tokens_only() -> None:
    labels = np.array([[0, 1, -1], [1, -1, -1]])  # 3 labelled tokens
    eye = np.eye(2) * 10
    teacher = eye[[[0, 1, 0], [1, 0, 0]]]  # right on all 3
    alone = eye[[[0, 0, 1], [0, 1, 1]]]  # right on 1 of 3 (padding ignored)
    split = Split({"teacher": teacher, "student_alone": alone, "student_kd": teacher}, labels)
    s = prediction_signals("classification", "validation split", split, split, n_train=2)
    assert s.n_held_out == 3 and s.alone_accuracy_held_out == pytest.approx(1 / 3)
    assert s.teacher_accuracy_held_out == 1.0 and s.agreement_kd_train == 1.0
    assert s.agreement_alone_held_out == pytest.approx(1 / 3)


# --- end to end -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    from kdkit.families.classification.config import parse_config
    from kdkit.families.classification.pipeline import run

    out = tmp_path_factory.mktemp("diagnosis") / "run"
    cfg = parse_config({"seed": 0, "output_dir": str(out),
                        "data": {"name": "mnist1d", "transfer_size": 500, "val_fraction": 0.1},
                        "train": {"epochs": 1, "batch_size": 128},
                        "teacher": {"name": "cnn1d", "params": {"width": 16, "depth": 2, "kernel": 3}},
                        "student": {"name": "mlp", "params": {"hidden": [16]}}})
    run(cfg, console=Console(file=io.StringIO()), quick_cost=True)
    return out


def test_a_run_saves_its_signals_from_its_own_predictions(tiny_run: Path) -> None:
    from kdkit.measure import metrics

    results = json.loads((tiny_run / "results.json").read_text())
    s = results["diagnosis"]["signals"]
    with np.load(tiny_run / "predictions.npz") as npz:
        preds = dict(npz)
    n_train = results["data"]["n_train"]
    assert s["n_train"] == n_train == 3600 and s["n_pool"] == 500 and s["held_out"] == "validation split"
    assert s["n_held_out"] == len(preds["val_labels"]) == results["data"]["n_val"]
    assert s["alone_accuracy_held_out"] == pytest.approx(metrics.accuracy(preds["val_student_alone"],
                                                                           preds["val_labels"]))
    assert s["alone_accuracy_train"] == pytest.approx(metrics.accuracy(preds["train_student_alone"][:n_train],
                                                                        preds["train_labels"][:n_train]))
    assert s["agreement_kd_held_out"] == pytest.approx(metrics.agreement(preds["val_student_kd"],
                                                                          preds["val_teacher"]))
    top = metrics.softmax(preds["train_teacher"][:n_train]).max(1).mean()
    assert s["teacher_confidence_train"] == pytest.approx(top)
    rows = {r["role"]: r for r in results["rows"]}
    assert s["capacity_ratio"] == pytest.approx(rows["teacher"]["params"] / rows["student_kd"]["params"])
    assert results["diagnosis"]["predicted"] == diagnose(Signals.from_dict(s)).predicted


def test_diagnose_prints_the_signals_and_the_advice(tiny_run: Path, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["diagnose", str(tiny_run)])
    assert done.value.code == 0
    out = capsys.readouterr().out
    saved = json.loads((tiny_run / "results.json").read_text())
    assert "teacher: mean top probability" in out and "validation split" in out
    assert f"predicted by the rules: {saved['diagnosis']['predicted']}; measured: {saved['verdict']['headline']}" in out
    for advice in saved["diagnosis"]["advice"]:
        assert f"[{advice['rule']}, predicts {advice['predicts']}] {advice['message']}" in out
    with pytest.raises(SystemExit):
        main(["diagnose", str(tiny_run), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert data["signals"] == saved["diagnosis"]["signals"] and data["measured"] == saved["verdict"]["kind"]


def test_the_report_shows_the_diagnosis(tiny_run: Path) -> None:
    from kdkit.report.build import write_report

    md = write_report(tiny_run).markdown.read_text()
    section = md[md.index("## Diagnosis"):]
    saved = json.loads((tiny_run / "results.json").read_text())["diagnosis"]
    assert f"{saved['signals']['alone_accuracy_held_out']:.4f}" in section
    assert f"The rules predict: {saved['predicted']}" in section and saved["advice"][0]["message"] in section
    assert "interleaved rounds" in md  # a torch run's report says how its cost was timed (a tabular one does not)


def test_an_older_run_is_diagnosed_from_its_predictions(tiny_run: Path, tmp_path: Path, capsys) -> None:
    import shutil

    old = tmp_path / "old"
    shutil.copytree(tiny_run, old, ignore=shutil.ignore_patterns("checkpoints", "report*"))
    results = json.loads((old / "results.json").read_text())
    del results["diagnosis"]
    (old / "results.json").write_text(json.dumps(results))
    with pytest.raises(SystemExit) as done:
        main(["diagnose", str(old)])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "test split" in out and "saved no diagnosis" in out
    assert "500 (0.1x the labelled set)" in out  # the unlabelled rows of its distillation-data predictions


def test_diagnose_refuses_what_is_no_run_in_one_line(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["diagnose", str(tmp_path / "nowhere")])
    assert done.value.code == 2 and "run directory not found" in capsys.readouterr().err


def test_a_damaged_diagnosis_is_read_as_none(tiny_run: Path, tmp_path: Path, capsys) -> None:
    """A classification run falls back to its predictions; a tabular or LM run, which cannot, gets one line."""
    import shutil

    run = tmp_path / "damaged"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("checkpoints", "models", "report*"))
    results = json.loads((run / "results.json").read_text())
    results["diagnosis"] = {"signals": {"family": "classification", "held_out": "x", "alone_gap": "oops",
                                        "teacher_accuracy_held_out": "high"}}
    (run / "results.json").write_text(json.dumps(results))
    with pytest.raises(SystemExit) as done:
        main(["diagnose", str(run)])
    assert done.value.code == 0 and "saved no diagnosis" in capsys.readouterr().out
    (run / "results.json").write_text(json.dumps({**results, "kind": "tabular"}))
    with pytest.raises(SystemExit) as done:
        main(["diagnose", str(run)])
    err = capsys.readouterr().err
    assert done.value.code == 2 and "has no diagnosis" in err and len(err.strip().splitlines()) == 1
