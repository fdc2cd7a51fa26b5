"""The shared benchmark protocol's verdict per row: kdkit's verdict over seeds (a 95% t-interval of the per-seed
paired differences, mean ± t(0.975, n-1) · s / sqrt(n)), not a rule of its own."""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

import pytest
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
_protocol = pytest.importorskip("_protocol")

ALONE = _protocol.ALONE


def paired_runs(rows: dict[str, list[float]]) -> list[dict]:
    """One run per seed: the student alone at 0.80, each row `points` accuracy points above it in that seed."""
    seeds = len(next(iter(rows.values())))
    return [{"teacher": {"accuracy": 0.95}, ALONE: {"accuracy": 0.80},
             **{row: {"accuracy": 0.80 + diffs[s] / 100} for row, diffs in rows.items()}} for s in range(seeds)]


def t_interval(points: list[float]) -> tuple[float, float, float]:
    mean = statistics.mean(points)
    half = stats.t.ppf(0.975, len(points) - 1) * statistics.stdev(points) / math.sqrt(len(points))
    return mean, mean - half, mean + half


def test_each_row_gets_the_t_interval_verdict_even_where_two_standard_errors_would_say_otherwise():
    # "within": mean 2 points, s.e. 0.58 -> 3.5 s.e. above 0 (a gain by a 2 s.e. rule), but t(0.975, 2) = 4.30
    rows = {"steady": [3.0, 3.1, 2.9], "within": [1.0, 2.0, 3.0], "worse": [-3.0, -3.2, -2.8]}
    line = _protocol.verdict(paired_runs(rows), list(rows))
    words = {row: "{:+.2f}, {:+.2f} to {:+.2f}".format(*t_interval(points)) for row, points in rows.items()}
    assert f"gain over the {ALONE}: steady ({words['steady']});" in line
    assert f"loss: worse ({words['worse']});" in line
    assert f"no measurable difference: within ({words['within']})." in line
    assert t_interval(rows["within"])[1] < 0 < statistics.mean(rows["within"]) - 2 * statistics.stdev(
        rows["within"]) / math.sqrt(3)  # the case where the two rules disagree


def test_one_seed_has_no_verdict_and_the_power_note_is_the_verdicts_interval():
    assert "no interval" in _protocol.verdict(paired_runs({"kd": [1.0]}), ["kd"])
    rows = {"kd": [1.0, 2.0, 3.0, 0.5], "dkd": [0.0, 0.1, 0.2, 0.1]}
    note = _protocol.power_note(paired_runs(rows), [ALONE, *rows], ALONE)
    mean, _, high = t_interval(rows["kd"])  # the row with the largest standard error
    assert f"± {high - mean:.2f} points at most" in note and "over 4 seeds" in note
    assert "**not** reliably visible" in note  # a half-width of 2.4 points cannot show a 1-point effect
