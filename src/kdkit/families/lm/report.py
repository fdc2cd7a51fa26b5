"""`kdkit report` and `kdkit compare` of language-model runs (kdkit.families.lm.rundir): the same questions as for
classification (did distillation work, at what cost, how sure are we), answered with LM numbers.

The report: the three-row table (exact match, perplexity, token accuracy, agreement and per-token KL with the
teacher, generation speed, parameters) recomputed from the per-test-row sums in predictions.npz, the verdict on
the paired difference in exact match per test problem (token accuracy per text for raw text), and the training
curves. Classification plots (reliability, confusion, per class) have no meaning over a vocabulary and are left
out. The comparison: mean ± std over the runs of a setting, and per setting the per-seed paired differences.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdkit.families.lm.rundir import COLUMNS, QUALITY, LMRun, format_value, load_lm_run
from kdkit.io.checkpoint import write_atomic
from kdkit.lm.metrics import summarize_units
from kdkit.report.build import curves_section
from kdkit.report.compare import COMPARE_HTML, COMPARE_MARKDOWN, FIGURE_DIR
from kdkit.report.diagnosis import diagnosis_section, from_results
from kdkit.report.document import Document, Section, Table, Text
from kdkit.report.html import render_html
from kdkit.report.markdown import render_markdown
from kdkit.run.rundir import CONFIG, LABELS, PREDICTIONS, REPORT_FIGURES, RESULTS, ROLES, RunDir
from kdkit.verdict import Verdict, lm_run_verdict, lm_seeds_verdict, verdict_metric

TITLE = "Verdict: did distillation work?"
EXPLAIN = ("Distilled minus alone is a paired difference: both students are scored on the same test problems (one "
           "run: a bootstrap over the problems; several seeds: the per-seed differences), so a gain is only called "
           "a gain when the whole 95% interval is above zero.")
COST = ("params", "tokens_per_s")


def lm_rows(run: LMRun) -> dict[str, dict[str, Any]]:
    """Per role: the quality numbers recomputed from the per-row sums, with parameters and generation speed
    from results.json (they cannot be recomputed without the models)."""
    out = {}
    for role in ROLES:
        row = summarize_units(run.units[role])
        row.update({k: run.rows[role][k] for k in COST if run.rows[role].get(k) is not None})
        out[role] = row
    return out


def mismatches(run: LMRun, rows: dict[str, dict[str, Any]], tol: float = 1e-6) -> list[str]:
    """Numbers where results.json disagrees with predictions.npz (one of them replaced by hand)."""
    out = []
    for role in ROLES:
        for key in QUALITY:
            old, new = run.rows[role].get(key), rows[role].get(key)
            if old is not None and new is not None and abs(old - new) > tol * max(1.0, abs(new)):
                out.append(f"{LABELS[role]} {key}: {RESULTS} {old:.4f}, predictions {new:.4f}")
    return out


def _table(rows: dict[str, dict[str, Any]]) -> Table:
    return Table(["model", *(label for _, label, _ in COLUMNS)],
                 [[LABELS[r], *(format_value(k, rows[r].get(k)) for k, _, _ in COLUMNS)] for r in ROLES],
                 caption="test split; perplexity, token accuracy, agreement and per-token KL over the labelled "
                         "(answer) tokens; exact match of the greedy answer per test problem")


def run_verdict_of(run: LMRun, rows: dict[str, dict[str, Any]]) -> Verdict:
    """The verdict results.json holds (what the run printed), else one computed now from the per-row sums."""
    saved = run.results.get("verdict")
    if isinstance(saved, dict):
        return Verdict.from_dict(saved)
    return lm_run_verdict(run.units, rows, seed=int(run.seed) if str(run.seed).isdigit() else 0)


def summary(rows: dict[str, dict[str, Any]]) -> str:
    kd, alone, teacher = rows["student_kd"], rows["student_alone"], rows["teacher"]
    parts = []
    if "exact_match" in kd:
        parts.append(f"The distilled student answers {kd['exact_match']:.1%} of the test problems exactly, against "
                     f"{alone['exact_match']:.1%} for the same student trained alone and {teacher['exact_match']:.1%} "
                     "for the teacher")
    parts.append(f"its perplexity is {kd['perplexity']:.3f} ({alone['perplexity']:.3f} alone, "
                 f"{teacher['perplexity']:.3f} for the teacher) and it agrees with the teacher's next token on "
                 f"{kd['agreement']:.1%} of the answer tokens ({alone['agreement']:.1%} alone)")
    if kd.get("params") and teacher.get("params"):
        parts.append(f"with {teacher['params'] / kd['params']:.1f}x fewer parameters than the teacher")
    return "; ".join(parts) + "."


def build_lm_document(run: LMRun) -> Document:
    rows = lm_rows(run)
    data = run.results.get("data", {})
    training = run.results.get("training") or {}
    scheme = training.get("scheme") or ((run.config or {}).get("distill") or {}).get("scheme", {}).get("name", "?")
    subtitle = (f"run {run.path} | language model | data {data.get('name', '?')} ({data.get('n_test', '?')} test "
                f"rows, {data.get('test_tokens', '?')} labelled tokens, vocabulary {data.get('vocab_size', '?')}) | "
                f"scheme {scheme} | created {run.results.get('created', '?')} on {run.results.get('device', '?')}")
    overview = Section("Teacher, student alone, distilled student", [
        Text(summary(rows)), _table(rows),
        Text(f"Quality and fidelity numbers are recomputed from {PREDICTIONS} (per test row: labelled tokens, summed "
             "negative log-likelihood, correct and agreeing tokens, summed KL, exact-match hit); parameters and "
             f"generation speed (batched greedy decoding, no key/value cache) come from {RESULTS}."),
    ])
    if "teacher_cache" in training:
        c = training["teacher_cache"]
        overview.blocks.append(Text(f"Teacher top-{c['k']} cache: {c['bytes'] / 1e6:.2f} MB on disk, built in "
                                    f"{c['build_seconds']:.1f} s."))
    overview.blocks += [Text(n, note=True) for n in run.notes]
    overview.blocks += [Text(f"{RESULTS} disagrees with {PREDICTIONS} (the report uses the predictions): " + m,
                             note=True) for m in mismatches(run, rows)]
    verdict = run_verdict_of(run, rows)
    verdict_section = Section(TITLE, [Text(verdict.headline), *(Text(a.text(), note=True) for a in verdict.advice),
                                      Text(EXPLAIN)])
    return Document(f"kdkit report: {data.get('name', run.path.name)} (language model)", subtitle,
                    [overview, verdict_section, diagnosis_section(from_results(run.results)),
                     curves_section(run, accuracy="next-token accuracy")])


def write_lm_report(run_dir: str | Path, figure_dir: str = REPORT_FIGURES) -> tuple[Path, Path, list[Path]]:
    """report.html, report.md and the figures of an LM run directory."""
    run = load_lm_run(run_dir)
    doc = build_lm_document(run)
    folder = run.path / figure_dir
    folder.mkdir(exist_ok=True)
    written = []
    for img in doc.images():
        path = folder / f"{img.name}.png"
        path.write_bytes(img.png)
        written.append(path)
    for stale in set(folder.glob("*.png")) - set(written):  # from an earlier report of this run
        stale.unlink()
    html, md = RunDir(run.path).report_html, RunDir(run.path).report_markdown
    write_atomic(html, render_html(doc))
    write_atomic(md, render_markdown(doc, figure_dir))
    return html, md, written


# --- kdkit compare ---------------------------------------------------------------------------------------------

@dataclass
class LMGroup:
    id: str
    label: str
    runs: list[LMRun]
    rows: list[dict[str, dict[str, Any]]]  # per run, lm_rows
    why: str = ""  # which runs were pooled, and on what grounds


def group_lm_runs(runs: list[LMRun]) -> list[LMGroup]:
    """Runs of one setting form one group, named by the keys in which the settings differ (kdkit.report.compare's
    rule: the config apart from seed and output_dir, the teacher keyed on its weights' SHA-256)."""
    from kdkit.report.compare import _short_id, pool_runs

    groups = []
    for index, (members, label, why) in enumerate(pool_runs([r.config for r in runs], [r.path for r in runs])):
        first = runs[members[0]]
        label = label or str(((first.config or {}).get("data") or {}).get("name", first.path.name))
        groups.append(LMGroup(_short_id(index), label, [runs[m] for m in members],
                              [lm_rows(runs[m]) for m in members], why))
    return groups


def _mean_std(values: list[float], key: str) -> str:
    if not values:
        return "-"
    mean = float(np.mean(values))
    if len(values) < 2:
        return format_value(key, mean)
    return f"{format_value(key, mean)} ± {format_value(key, float(np.std(values, ddof=1)))}"


def group_verdict(group: LMGroup) -> tuple[Verdict, list[float], str]:
    """A setting's verdict and its per-seed paired differences (distilled minus alone of the same run); a
    setting of one run keeps that run's bootstrap."""
    metric = verdict_metric(group.runs[0].units)
    key = metric.key
    diffs = [rows["student_kd"][key] - rows["student_alone"][key] for rows in group.rows]
    teacher = [rows["teacher"][key] - rows["student_alone"][key] for rows in group.rows]
    if len(group.runs) == 1:
        return run_verdict_of(group.runs[0], group.rows[0]), diffs, key
    means = {role: {k: float(np.mean([rows[role][k] for rows in group.rows if rows[role].get(k) is not None]))
                    for k in (key, "tokens_per_s") if any(rows[role].get(k) is not None for rows in group.rows)}
             for role in ROLES}
    return lm_seeds_verdict(diffs, means, metric, teacher), diffs, key


def _points(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{100 * value:+.1f}"


def build_lm_compare_document(groups: list[LMGroup]) -> Document:
    keys = [k for k, _, _ in COLUMNS]
    rows = []
    for group in groups:
        for role in ROLES:
            values = {k: [r[role][k] for r in group.rows if r[role].get(k) is not None] for k in keys}
            rows.append([group.id, LABELS[role], str(len(group.runs)), *(_mean_std(values[k], k) for k in keys)])
    n_runs = sum(len(g.runs) for g in groups)
    seeds_rows, notes = [], []
    for group in groups:
        verdict, diffs, key = group_verdict(group)
        seeds = [str(r.seed) for r in group.runs]
        seeds_rows.append([group.id, key.replace("_", " "), ", ".join(f"{s}: {_points(d)}" for s, d in
                                                                     zip(seeds, diffs, strict=True)),
                           _points(verdict.difference), f"{_points(verdict.low)} to {_points(verdict.high)}",
                           verdict.kind])
        notes.append(Text(f"{group.id}: {verdict.headline}", note=verdict.kind != "gain"))
        notes += [Text(f"{group.id}: {a.text()}", note=True) for a in verdict.advice]
    notes_runs = [Text(f"{r.path}: {note}", note=True) for g in groups for r in g.runs for note in r.notes]
    return Document("kdkit compare (language models)", f"{n_runs} runs, {len(groups)} settings", [
        Section("Runs side by side", [
            Text(f"{n_runs} runs in {len(groups)} settings. Runs whose {CONFIG} differs only by seed (and output "
                 f"directory) are pooled; quality numbers come from each run's {PREDICTIONS}, parameters and "
                 f"generation speed from its {RESULTS}."),
            Table(["id", "model", "runs", *(label for _, label, _ in COLUMNS)], rows,
                  caption="test split; mean ± sample standard deviation over the runs of a setting"),
            Table(["id", "setting", "run directories"],
                  [[g.id, g.label, ", ".join(str(r.path) for r in g.runs)] for g in groups]),
            *notes_runs,
        ]),
        Section(TITLE, [
            Text(EXPLAIN),
            Table(["id", "metric", "distilled minus alone per seed (points)", "mean", "95% interval", "verdict"],
                  seeds_rows, caption="paired by seed: the distilled student and the student alone of the same run "
                                      "share the data and the initial weights"),
            *notes,
        ]),
    ])


def write_lm_compare(run_dirs: list[Path], output_dir: str | Path, figure_dir: str = FIGURE_DIR) -> \
        tuple[Path, Path, list[str], list[str]]:
    """compare.html and compare.md of LM runs, one verdict line and one line of the runs it pooled (and why) per
    setting, for the terminal."""
    runs = [load_lm_run(d) for d in run_dirs]
    groups = group_lm_runs(runs)
    doc = build_lm_compare_document(groups)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    html, md = out / COMPARE_HTML, out / COMPARE_MARKDOWN
    write_atomic(html, render_html(doc))
    write_atomic(md, render_markdown(doc, figure_dir))
    return html, md, [f"{g.id} ({g.label}): {group_verdict(g)[0].headline}" for g in groups], \
        [f"{g.id}: {g.why}" for g in groups]


__all__ = ["build_lm_compare_document", "build_lm_document", "group_lm_runs", "lm_rows", "write_lm_compare",
           "write_lm_report"]
