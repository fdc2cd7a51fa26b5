"""The verdict as report sections: one run's (`kdkit report`) and one per setting over seeds (`kdkit compare`).

The numbers come from kdkit.verdict; this file only lays them out, so the terminal, results.json, the report and
the comparison use the same words and the same interval."""

from __future__ import annotations

from typing import Any

import numpy as np

from kdkit.report.document import Section, Table, Text
from kdkit.report.rundir import RunData
from kdkit.verdict import Verdict, run_verdict, seeds_interval, seeds_verdict

TITLE = "Verdict: did distillation work?"
EXPLAIN = ("Distilled minus alone is a paired difference: both students are scored on the same test samples (one "
           "run: a bootstrap over the test samples; several seeds: the per-seed differences), so a gain is only "
           "called a gain when the whole 95% interval is above zero.")


def run_verdict_of(run: RunData, rows: list[dict[str, Any]]) -> Verdict:
    """The verdict results.json holds (what `kdkit train` printed), or one computed now from the predictions for
    runs written before verdicts were saved."""
    saved = run.results.get("verdict")
    if isinstance(saved, dict):
        return Verdict.from_dict(saved)
    cfg = run.config or {}
    keep = ((cfg.get("distill") or {}).get("train") or {}).get("keep") or (cfg.get("train") or {}).get("keep", "best")
    data = run.results.get("data", {})
    return run_verdict(run.test.logits, run.test.labels, rows, n_val=data.get("n_val"), keep=keep,
                       seed=int(cfg.get("seed", 0)), data=data.get("name"))


def verdict_blocks(verdict: Verdict) -> list[Text]:
    """The headline, then each warning as a highlighted note."""
    return [Text(verdict.headline)] + [Text(a.text(), note=True) for a in verdict.advice]


def run_section(run: RunData, rows: list[dict[str, Any]]) -> Section:
    return Section(TITLE, [*verdict_blocks(run_verdict_of(run, rows)), Text(EXPLAIN)])


def _points(value: float | None) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{100 * value:+.1f}"


def group_verdict(group: Any) -> tuple[Verdict, list[float], float | None]:
    """A setting's verdict, its per-seed paired differences (distilled minus alone of the same run, so the same
    data split and initial weights) and their standard error; a setting of one run uses that run's bootstrap."""
    by_role = [{row["role"]: row for row in rows} for rows in group.rows]
    diffs = [r["student_kd"]["accuracy"] - r["student_alone"]["accuracy"] for r in by_role]
    teacher = [r["teacher"]["accuracy"] - r["student_alone"]["accuracy"] for r in by_role]
    mean_rows = {role: {key: float(np.mean([r[role][key] for r in by_role if r[role].get(key) is not None]))
                        for key in ("accuracy", "speedup") if any(r[role].get(key) is not None for r in by_role)}
                 for role in by_role[0]}
    verdict = (run_verdict_of(group.runs[0], group.rows[0]) if len(diffs) == 1
               else seeds_verdict(diffs, mean_rows, teacher))
    return verdict, diffs, seeds_interval(diffs)[3]


def seeds_section(groups: list[Any]) -> Section:
    """Per setting: the paired difference of every seed, their mean with its standard error and t-interval, and
    the verdict, with its warnings below the table."""
    table_rows, notes = [], []
    for group in groups:
        verdict, diffs, sem = group_verdict(group)
        seeds = [str((run.config or {}).get("seed", "?")) for run in group.runs]
        table_rows.append([
            group.id, str(len(diffs)), ", ".join(f"{s}: {_points(d)}" for s, d in zip(seeds, diffs, strict=True)),
            _points(verdict.difference), "-" if sem is None else f"{100 * sem:.1f}",
            f"{_points(verdict.low)} to {_points(verdict.high)}", verdict.kind,
        ])
        notes += [Text(f"{group.id}: {verdict.headline}", note=verdict.kind != "gain")]
        notes += [Text(f"{group.id}: {a.text()}", note=True) for a in verdict.advice]
    table = Table(["id", "seeds", "distilled minus alone per seed (points)", "mean", "standard error",
                   "95% interval", "verdict"], table_rows,
                  caption="test accuracy, distilled student minus the student alone of the same run (paired by seed); "
                          "a single run's interval is its paired bootstrap over test samples")
    return Section(TITLE, [Text(EXPLAIN), table, *notes])
