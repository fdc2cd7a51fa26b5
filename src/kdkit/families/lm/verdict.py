"""Did distillation work for a language model? The verdict of kdkit.verdict on an LM metric.

The paired difference is the distilled student's minus the student alone's, on the same test rows:

- exact match per test problem when the data has prompt/response pairs (each problem is one resampled unit,
  scored 1 or 0): the metric the generated task is built for;
- token accuracy per test text otherwise (raw text: a resampled unit is one text, its correct tokens over its
  labelled tokens, since tokens of one text are not independent).

One run: a paired bootstrap over those units (kdkit.verdict.paired_bootstrap). Several seeds (`kdkit compare`):
the per-seed differences and their t-interval (kdkit.verdict.seeds_interval). Warnings say what to try next with
the LM schemes rather than the classification recipes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from kdkit.verdict import (
    NOT_FASTER,
    RESAMPLES,
    Advice,
    Verdict,
    kind_of,
    not_paid,
    paired_bootstrap,
    seeds_interval,
    teacher_not_better,
)

if TYPE_CHECKING:
    from kdkit.diagnosis import Finding

SECTION = "docs/guides/language-models.md"  # the page of the documentation that explains its warnings
TRY_NEXT = ("give the teacher more prompts to answer (`data.n_transfer` with `distill.scheme.name: sequence_level`), "
            "try another divergence (`forward_kl`, `reverse_kl`, `jsd`, `tv` in `distill.losses`) or on-policy "
            "distillation (`distill.scheme.name: on_policy`)")


def verdict_metric(units: Mapping[str, Mapping[str, np.ndarray]]) -> tuple[str, str]:
    """(key, words) of the metric the verdict compares: exact match when every model has per-problem hits."""
    if all("exact" in u for u in units.values()):
        return "exact_match", "exact-match"
    return "token_accuracy", "token-accuracy"


def unit_scores(units: Mapping[str, np.ndarray], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(score, total) per unit: exact hits out of 1, or correct tokens out of labelled tokens."""
    if key == "exact_match":
        return np.asarray(units["exact"], float), np.ones(len(units["exact"]))
    return np.asarray(units["correct"], float), np.asarray(units["tokens"], float)


def lm_advice(kind: str, rows: Mapping[str, Mapping[str, Any]], key: str, teacher_low: float | None,
              teacher_high: float | None = None, why: Finding | None = None) -> list[Advice]:
    """The warnings that apply to an LM run: no gain (with the diagnosis's first finding `why`, when there is one),
    a teacher no better than the student alone (`teacher_low`, `teacher_high`: the interval of teacher minus
    alone), a student that does not generate faster than the teacher."""
    out = not_paid(kind, why, TRY_NEXT, SECTION)
    teacher, alone = rows.get("teacher", {}), rows.get("student_alone", {})
    words = None if teacher_low is None else teacher_not_better(
        teacher.get(key, float("nan")), alone.get(key, float("nan")), teacher_low, teacher_high, f"{key} ")
    if words and (why is None or why.rule != "teacher_not_better"):  # else the diagnosis said it already
        out.append(Advice(
            "teacher_not_better", words,
            "train the teacher longer (`teacher.train.epochs`) or make it larger, and check its row before distilling",
            SECTION))
    fast_t, fast_s = teacher.get("tokens_per_s"), rows.get("student_kd", {}).get("tokens_per_s")
    if fast_t and fast_s and fast_s / fast_t < NOT_FASTER:
        out.append(Advice(
            "not_faster", f"The student does not generate faster than the teacher ({fast_s / fast_t:.2f}x tokens/s).",
            "pick a smaller student (fewer layers, less width) or a larger teacher", SECTION))
    return out


def lm_run_verdict(units: Mapping[str, Mapping[str, np.ndarray]], rows: Mapping[str, Mapping[str, Any]],
                   resamples: int = RESAMPLES, seed: int = 0, why: Finding | None = None) -> Verdict:
    """One run's verdict from its per-unit sums by role (lm_units, plus `exact` hits when there are prompts); `why`
    (the diagnosis's first finding) words the warning when distillation did not pay."""
    key, words = verdict_metric(units)
    kd, total = unit_scores(units["student_kd"], key)
    alone, _ = unit_scores(units["student_alone"], key)
    teacher, _ = unit_scores(units["teacher"], key)
    diff, low, high = paired_bootstrap(kd, alone, total, resamples, seed)
    _, teacher_low, teacher_high = paired_bootstrap(teacher, alone, total, resamples, seed)
    kind = kind_of(low, high)
    unit = "test problems" if key == "exact_match" else "test texts"
    method = f"paired bootstrap over {len(total):,} {unit}, {resamples:,} resamples, seed {seed}"
    return Verdict(kind, diff, low, high, method, len(total),
                   advice=lm_advice(kind, rows, key, teacher_low, teacher_high, why), metric=words)


def lm_seeds_verdict(differences: Sequence[float], rows: Mapping[str, Mapping[str, Any]], key: str, words: str,
                     teacher_minus_alone: Sequence[float]) -> Verdict:
    """The verdict over seeds from per-seed paired differences of `key` (distilled minus alone, same seed)."""
    mean, low, high, sem = seeds_interval(differences)
    kind = kind_of(low, high)
    n = len(differences)
    method = (f"mean over {n} seeds ± standard error {100 * sem:.1f}, t-interval" if sem is not None
              else "one seed: no interval; run more seeds")
    _, teacher_low, teacher_high, _ = (seeds_interval(teacher_minus_alone) if len(teacher_minus_alone) > 1
                                       else (0, None, None, 0))
    return Verdict(kind, mean, low, high, method, n, per_seed=[float(d) for d in differences],
                   advice=lm_advice(kind, rows, key, teacher_low, teacher_high), metric=words)


__all__ = ["lm_run_verdict", "lm_seeds_verdict", "unit_scores", "verdict_metric"]
