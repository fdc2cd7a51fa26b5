"""`kdkit report RUN_DIR`: answer "did distillation work?" twice, by generalization (accuracy, NLL,
calibration) and by fidelity to the teacher (agreement, KL), next to what the student costs; written as
report.html (self-contained) and report.md (+ report_figures/*.png) in the run directory."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdkit.io.checkpoint import write_atomic
from kdkit.io.storage import storage_errors
from kdkit.measure import metrics
from kdkit.measure.spread import conditions_text, speedup_text
from kdkit.report import figures, numbers
from kdkit.report.diagnosis import diagnosis_section, from_results
from kdkit.report.document import Document, Image, Section, Table, Text
from kdkit.report.html import render_html
from kdkit.report.markdown import render_markdown
from kdkit.report.rundir import RunData, load_run
from kdkit.report.table import COLUMNS, cell
from kdkit.report.verdict import run_section
from kdkit.run.rundir import COST, COST_OUTPUTS, METRICS, PREDICTIONS, REPORT_FIGURES, RESULTS, ROLES, STUDENTS, RunDir

GROUPS = (
    ("", ("model",)),
    ("generalization (test)", ("accuracy", "macro_f1", "nll", "ece")),
    ("fidelity (test)", ("agreement", "predictive_kl")),
    ("cost", ("params", "size_bytes", "latency_ms", "throughput", "speedup")),
)


@dataclass
class ReportFiles:
    html: Path
    markdown: Path
    figures: list[Path]


def fmt(key: str, value: Any) -> str:
    return "-" if value is None else COLUMNS[key][1](value)


def main_table(rows: list[dict[str, Any]]) -> Table:
    keys = [k for _, ks in GROUPS for k in ks]
    return Table(
        headers=[COLUMNS[k][0] for k in keys],
        rows=[[cell(k, row) for k in keys] for row in rows],  # cost with its quartiles, uncertain speed-ups marked
        groups=[(title, len(ks)) for title, ks in GROUPS],
    )


def summary(rows: dict[str, dict[str, Any]]) -> str:
    kd, alone = rows["student_kd"], rows["student_alone"]
    speed = ""
    if kd.get("speedup") and kd.get("speedup_certain") is False:
        speed = (f"; at batch 1 its latency is not measurably different from the teacher's "
                 f"({speedup_text(kd['speedup'], False)}: the latency spreads overlap)")
    elif kd.get("speedup"):
        speed = f" and runs {kd['speedup']:.1f}x faster than the teacher at batch 1"
    return (
        f"The distilled student reaches test accuracy {kd['accuracy']:.4f} against {alone['accuracy']:.4f} for the "
        f"same student trained alone ({kd['accuracy'] - alone['accuracy']:+.4f}) and {rows['teacher']['accuracy']:.4f} "
        f"for the teacher; it agrees with the teacher on {kd['agreement']:.1%} of test samples "
        f"({alone['agreement']:.1%} alone){speed}."
    )


def fidelity_section(run: RunData) -> Section:
    fid = numbers.fidelity(run)
    splits = {name: split for name, split in (("train", run.train), ("test", run.test)) if split is not None}
    section = Section("Fidelity on the distillation data and on test data")
    section.blocks.append(Text(
        "Fidelity says whether the student learned to imitate its teacher: top-1 agreement and mean "
        "KL(teacher || student) at temperature 1. High fidelity on the distillation data but not on test data "
        "means the student imitates the teacher only where it was shown it."))
    if run.train is None:
        section.blocks.append(Text("This run saved no predictions on the distillation data, so fidelity is shown on "
                                   "test data only.", note=True))
    metric_names = {"agreement": "agreement", "predictive_kl": "pred. KL", "accuracy": "accuracy"}
    keys = [(split, key) for key in metric_names for split in splits]
    headers = ["model"] + [numbers.SPLITS[split] for split, _ in keys]
    groups = [("", 1)] + [(name, len(splits)) for name in metric_names.values()]
    sizes = "; ".join(f"{numbers.SPLITS[s]}: {fid['student_kd'][s]['n']:,} samples, "
                      f"{fid['student_kd'][s]['n_labelled']:,} labelled" for s in splits)
    section.blocks.append(Table(headers, [[run.label(r)] + [fmt(k, fid[r][s][k]) for s, k in keys] for r in STUDENTS],
                                caption=f"{sizes} (accuracy counts labelled samples only)", groups=groups))
    kl = {f"per-sample KL, {numbers.SPLITS[s]}": {r: metrics.per_sample_kl(split.logits["teacher"], split.logits[r])
                                                  for r in STUDENTS} for s, split in splits.items()}
    section.blocks.append(Image("kl_histogram", figures.kl_histogram(kl, run.labels),
                                "histogram of per-sample predictive KL",
                                "Where the students depart from the teacher: a long right tail is a set of samples "
                                "the student sees very differently (values above the 99th percentile are put in "
                                "the last bin)."))
    matrices = {r: numbers.confusion(run.test.logits["teacher"], run.test.logits[r]) for r in STUDENTS}
    section.blocks.append(Image("confusion", figures.confusion(run.class_names, matrices, run.labels),
                                "teacher vs student confusion matrix of predicted labels",
                                "Test data. Off-diagonal cells are the classes the student confuses where the "
                                "teacher does not (counts; colour = share of the teacher's row)."))
    return section


def per_class_section(run: RunData) -> Section:
    pc = numbers.per_class(run.test)
    names = run.class_names
    section = Section("Per class (test data)")
    section.blocks.append(Image("per_class", figures.per_class(names, pc["accuracy"], pc["agreement"], run.labels),
                                "per-class accuracy and agreement"))
    if len(names) <= 30:
        headers = (["class"] + [f"accuracy: {run.label(r)}" for r in ROLES]
                   + [f"agreement: {run.label(r)}" for r in STUDENTS])
        rows = [[name] + [fmt("accuracy", _num(pc["accuracy"][r][i])) for r in ROLES]
                + [fmt("agreement", _num(pc["agreement"][r][i])) for r in STUDENTS] for i, name in enumerate(names)]
        section.blocks.append(Table(headers, rows))
    return section


def _num(value: float) -> float | None:
    return None if value != value else float(value)  # NaN (class absent from the test data) -> "-"


def calibration_section(run: RunData, rows: list[dict[str, Any]]) -> Section:
    bins = {r: numbers.reliability(run.test.logits[r], run.test.labels) for r in ROLES}
    eces = {row["role"]: row["ece"] for row in rows}
    return Section("Calibration (test data)", [
        Text("Reliability diagrams: accuracy of the samples in each confidence bin; bars under the diagonal are "
             "over-confident. 15 equal-width bins, the same as the ECE in the table."),
        Image("reliability", figures.reliability(bins, eces, run.labels), "reliability diagrams"),
    ])


def curves_section(run: Any, accuracy: str = "accuracy") -> Section:
    """Loss terms, accuracy (`accuracy` names it: an LM run's is next-token accuracy) and agreement per epoch, from
    a run's `history` (metrics.jsonl records) and `labels` (a RunData or an LM run alike)."""
    section = Section("Training curves")
    curves = numbers.curves(run.history)
    if not curves:
        section.blocks.append(Text(f"No training curves: {METRICS} is missing or has no per-epoch records.",
                                   note=True))
        return section
    losses = {model: numbers.loss_terms(series) for model, series in curves.items()}
    section.blocks.append(Text(f"Per epoch, from {METRICS}: the total loss (solid) and every loss term (dotted) "
                               f"as raw, unweighted values; {accuracy} on training (solid) and validation (dashed) "
                               "data; validation agreement with the teacher where the scheme has one."))
    section.blocks.append(Image("training_curves", figures.training_curves(curves, losses, run.labels),
                                "training curves"))
    return section


def tradeoff_section(rows: list[dict[str, Any]]) -> Section:
    points = [{"label": row["model"], "latency_ms": row["latency_ms"], "accuracy": row["accuracy"],
               "color": figures.COLORS[row["role"]], "marker": "s" if row["role"] == "teacher" else "o"}
              for row in rows if row.get("latency_ms")]
    if not points:
        return Section("Accuracy vs latency", [Text(f"{RESULTS} has no latency numbers.", note=True)])
    return Section("Accuracy vs latency", [
        Text("The trade-off being bought: how much test accuracy each model keeps for its latency at batch 1 "
             "(measured when the run was evaluated, on its device)."),
        Image("tradeoff", figures.tradeoff(points), "accuracy against latency"),
    ])


def build_document(run: RunData) -> Document:
    rows = numbers.model_rows(run)
    data = run.results.get("data", {})
    scheme = ((run.config or {}).get("distill") or {}).get("scheme") or {}
    subtitle = (f"run {run.path} | data {data.get('name', '?')} ({data.get('num_classes', run.num_classes)} classes, "
                f"{len(run.test.labels):,} test samples) | scheme {scheme.get('name', 'offline')} | created "
                f"{run.results.get('created', '?')} on {run.results.get('device', '?')}")
    overview = Section("Teacher, student alone, distilled student", [
        Text(summary({row["role"]: row for row in rows})),
        main_table(rows),
        Text(f"Quality and fidelity numbers are recomputed from {PREDICTIONS} with kdkit.measure.metrics; cost "
             f"numbers come from {RESULTS}."),
    ])
    if (run.results.get("cost") or {}).get("interleaved"):  # torch models' rounds (a tabular run notes its own plan)
        overview.blocks.append(Text(conditions_text(run.results["cost"]), note=True))
    overview.blocks += [Text(n, note=True) for n in run.notes]
    overview.blocks += [Text(f"{RESULTS} disagrees with {PREDICTIONS} (the report uses the predictions): " + m,
                             note=True) for m in numbers.mismatches(run, rows)]
    return Document(f"kdkit report: {data.get('name', run.path.name)}", subtitle, [
        overview, run_section(run, rows), diagnosis_section(from_results(run.results, run)), *scores_section(run),
        *remeasured_section(run), fidelity_section(run), calibration_section(run, rows), per_class_section(run),
        curves_section(run), tradeoff_section(rows),
    ])


def scores_section(run: RunData) -> list[Section]:
    """A tabular run's scores (ROC AUC, log loss, macro F1 at its threshold) on the held-out rows, then out of fold
    on the fitting rows, labelled as what they are: optimistic for the distilled student, never the verdict."""
    found = [(title, run.results.get(key)) for key, title in (("scores", "held-out rows (the verdict's)"),
                                                              ("oof_scores", "out of fold on the fitting rows: "
                                                                             "optimistic, not the verdict"))]
    tables = [score_table(scores, title) for title, scores in found if isinstance(scores, dict) and scores]
    return [Section("Scores: held-out and out of fold", list(tables))] if len(tables) == 2 else []


def score_table(scores: dict[str, Any], caption: str) -> Table:
    """One row per model of a tabular run's scores (every numeric key but the threshold)."""
    first = next((v for v in scores.values() if isinstance(v, dict)), {})
    keys = [k for k, v in first.items() if isinstance(v, (int, float)) and k != "threshold"]
    return Table(["model", *keys], [[str(v.get("name", role)), *(fmt_score(v.get(k)) for k in keys)]
                                    for role, v in scores.items() if isinstance(v, dict)], caption=caption)


def fmt_score(value: Any) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.4f}"


def remeasured_section(run: RunData) -> list[Section]:
    """The cost of the three models as `kdkit evaluate --cost-only` last re-measured it (cost.json), if it did."""
    path = run.path / COST_OUTPUTS["results"]
    try:
        saved = json.loads(path.read_text())
        rows = [r for r in saved["rows"] if isinstance(r, dict) and r.get("latency_ms") is not None]
    except (OSError, ValueError, KeyError, TypeError):
        return []  # never re-measured (or a damaged file: the training's numbers above still stand)
    keys = ("model", "params", "size_bytes", "latency_ms", "throughput", "speedup")
    return [Section("Cost, re-measured", [
        Text(f"Re-timed by `kdkit evaluate --cost-only` on {saved.get('created', '?')} ({COST}); accuracy was "
             "not re-evaluated, and the table above keeps the numbers measured at the end of training."),
        Table(headers=[COLUMNS[k][0] for k in keys], rows=[[cell(k, row) for k in keys] for row in rows]),
        Text(conditions_text(saved.get("cost") or {}), note=True),
    ])]


def write_report(run_dir: str | Path) -> ReportFiles:
    """Build the report of a classification (or tabular) run from its saved files and write report.html, report.md
    and the PNGs; kdkit.families.runs.write_report hands each run to its family."""
    run = load_run(run_dir)
    doc = build_document(run)
    fig_dir = RunDir(run.path).report_figures
    written = []
    for img in doc.images():  # atomic like every other write: a full disk is one line and leaves no torn PNG
        written.append(write_atomic(fig_dir / f"{img.name}.png", img.png))
    with storage_errors(fig_dir):
        for stale in set(fig_dir.glob("*.png")) - set(written):  # from an earlier report of this run
            stale.unlink()
    html_path, md_path = RunDir(run.path).report_html, RunDir(run.path).report_markdown
    write_atomic(html_path, render_html(doc))
    write_atomic(md_path, render_markdown(doc, REPORT_FIGURES))
    return ReportFiles(html_path, md_path, written)
