"""Cost numbers that can be compared: spreads, interleaved rounds, a fixed thread count, uncertain speed-ups."""

import json

import pytest
import torch
from torch import nn

from kdkit.measure import cost
from kdkit.measure.cost import Plan
from kdkit.measure.spread import Spread, conditions_text, speedup, speedup_text
from kdkit.report.table import cell, to_markdown


def _row(median: float, q1: float, q3: float) -> dict:
    return {"latency_ms": median, "latency_ms_q1": q1, "latency_ms_q3": q3}


def test_spread_quartiles_of_hand_made_numbers():
    s = Spread.of([5.0, 1.0, 4.0, 2.0, 3.0])
    assert (s.q1, s.median, s.q3) == (2.0, 3.0, 4.0)
    assert Spread.of([7.0]) == Spread(7.0, 7.0, 7.0)
    assert Spread(1.0, 0.5, 2.0).overlaps(Spread(3.0, 1.9, 4.0))
    assert not Spread(1.0, 0.5, 2.0).overlaps(Spread(3.0, 2.1, 4.0))
    with pytest.raises(ValueError):
        Spread.of([])


def test_separate_spreads_give_a_plain_speedup():
    teacher, student = _row(10.0, 9.0, 11.0), _row(2.0, 1.5, 2.5)
    out = speedup(teacher, student)
    assert out["speedup"] == pytest.approx(5.0) and out["speedup_certain"] is True
    assert out["speedup_low"] == pytest.approx(9.0 / 2.5) and out["speedup_high"] == pytest.approx(11.0 / 1.5)
    assert speedup_text(out["speedup"], out["speedup_certain"]) == "5.0x"


def test_overlapping_spreads_are_marked_uncertain():
    teacher, student = _row(1.0, 0.8, 1.5), _row(0.9, 0.7, 0.85)  # medians differ, the IQRs share 0.8..0.85
    out = speedup(teacher, student)
    assert out["speedup_certain"] is False
    assert speedup_text(out["speedup"], out["speedup_certain"]) == "~1.1x?"
    row = {**student, **out}
    assert cell("speedup", row) == "~1.1x?"
    assert cell("latency_ms", row) == "0.900 (0.700-0.850)"
    assert "~1.1x?" in to_markdown([{"model": "s", **row}])
    # the reference row itself is 1.0x by definition, not uncertain; an old run without spreads prints as before
    assert speedup(teacher, teacher)["speedup_certain"] is True
    assert speedup_text(3.0, None) == "3.0x" and cell("latency_ms", {"latency_ms": 0.5}) == "0.500"


def test_measure_interleaves_models_with_fixed_threads_and_records_conditions():
    calls: list[tuple[str, int]] = []

    class Probe(nn.Module):
        """Records which model ran, and under how many torch threads."""

        def __init__(self, name: str, width: int):
            super().__init__()
            self.name, self.layer = name, nn.Linear(4, width)

        def forward(self, x):
            calls.append((self.name, torch.get_num_threads()))
            return self.layer(x)

    before = torch.get_num_threads()
    models = {"teacher": Probe("teacher", 64), "student": Probe("student", 2)}
    rows, conditions = cost.measure(models, (4,), plan=cost.Plan.quick(), threads=1)
    assert torch.get_num_threads() == before  # restored afterwards
    assert {threads for _, threads in calls} == {1}
    names = [name for name, _ in calls]
    # after the warm-up the models take turns (three rounds, each starting with a different model): timed one
    # after the other, the sequence would switch model once
    timed = names[len(names) - sum(sum(r["timed_passes"].values()) for r in rows.values()):]
    assert sum(a != b for a, b in zip(timed, timed[1:], strict=False)) >= 3
    for row in rows.values():
        for key in ("latency_ms", "throughput"):
            assert 0 < row[f"{key}_q1"] <= row[key] <= row[f"{key}_q3"]
    assert rows["teacher"]["params"] == 4 * 64 + 64
    assert conditions["threads"] == 1 and conditions["interleaved"] and conditions["rounds"] == 3
    assert "load_before" in conditions and conditions["devices"] == {"teacher": "cpu", "student": "cpu"}
    json.dumps(conditions)  # goes into results.json as it is
    assert "1 torch thread(s)" in conditions_text(conditions)


def test_compare_adds_speedups_over_the_reference():
    models = {"teacher": nn.Sequential(*[nn.Linear(32, 32) for _ in range(30)]), "student": nn.Linear(32, 32)}
    rows, _ = cost.compare(models, (32,), quick=True, threads=1)
    assert rows["teacher"]["speedup"] == 1.0 and rows["teacher"]["speedup_certain"] is True
    student = rows["student"]
    assert student["speedup"] == pytest.approx(rows["teacher"]["latency_ms"] / student["latency_ms"])
    assert student["speedup_low"] <= student["speedup"] <= student["speedup_high"]
    assert isinstance(student["speedup_certain"], bool)


def test_the_conditions_name_the_plan_and_a_quick_plan_is_said_to_be_noisier():
    assert (Plan().name, Plan.quick().name, Plan(rounds=9).name) == ("full", "quick", "custom")
    model = {"student": nn.Linear(4, 2)}
    _, quick = cost.measure(model, (4,), plan=Plan.quick(), threads=1)
    assert quick["plan"] == "quick" and quick["repeats"] == {"latency": 2, "throughput": 1}
    _, custom = cost.measure(model, (4,), plan=Plan(rounds=2, min_round_s=0.0), threads=1)
    assert custom["plan"] == "custom" and custom["rounds"] == 2
    assert "quick plan" in conditions_text(quick) and "quick plan" not in conditions_text(custom)
