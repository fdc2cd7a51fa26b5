"""`kdkit compare RUN_DIR...`: several runs (methods, schemes, seeds) in one table, mean +- std over the runs
that differ only by seed, and one accuracy-vs-latency chart; written as compare.html and compare.md.

Runs are grouped by their config.yaml without seed and output_dir, so seeds of one setting pool together. The
teacher counts as the same when its weights are: runs that load one teacher through ``teacher.checkpoint`` (from
any path) pool with each other and with the run that trained it, keyed on the SHA-256 of the teacher's weights file
(kdkit.run.meta.weights_sha256), as long as the rest of their configs is the same. A group is named by the config
keys in which it differs from the other groups, and says which runs it pooled and why."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kdkit.errors import RunDirError
from kdkit.io.checkpoint import write_atomic
from kdkit.report import figures, numbers
from kdkit.report.document import Document, Image, Section, Table, Text
from kdkit.report.html import render_html
from kdkit.report.markdown import render_markdown
from kdkit.report.rundir import RunData, load_run
from kdkit.report.table import COLUMNS
from kdkit.report.verdict import group_verdict, seeds_section
from kdkit.run.rundir import CONFIG, LABELS, PREDICTIONS, RESULTS, ROLES

IGNORED = ("seed", "output_dir")  # config keys (at any depth) that do not define a setting
KEYS = ("accuracy", "macro_f1", "nll", "ece", "agreement", "predictive_kl", "latency_ms", "params")
INTEGER_KEYS = ("params",)
MARKERS = {"teacher": "s", "student_alone": "^", "student_kd": "o"}
FIGURE_DIR = "compare_figures"  # the figures of compare.md, beside it in the output directory
COMPARE_HTML, COMPARE_MARKDOWN = "compare.html", "compare.md"


@dataclass
class Group:
    id: str  # short name in the chart's legend
    label: str
    runs: list[RunData]
    rows: list[list[dict[str, Any]]]  # per run, numbers.model_rows
    why: str = ""  # which runs were pooled, and on what grounds


def flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    """Leaf keys of a config as dotted paths -> JSON text of the value; lists stay whole (e.g. the losses).
    Null leaves are dropped, so a run from before a new optional key existed pools with one that has it unset."""
    if tree is None:
        return {}
    if isinstance(tree, dict):
        out: dict[str, str] = {}
        for key, value in tree.items():
            if key not in IGNORED:
                out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): json.dumps(tree, sort_keys=True, separators=(",", ":"))}


def group_runs(runs: list[RunData]) -> list[Group]:
    """Runs of one setting (see the module docstring) form one group, in the order first seen."""
    pools = pool_runs([r.config for r in runs], [r.path for r in runs])
    return [Group(_short_id(i), label or _default_label(runs[members[0]]), [runs[m] for m in members],
                  [numbers.model_rows(runs[m]) for m in members], why)
            for i, (members, label, why) in enumerate(pools)]


def _teacher_part(flat: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(the teacher's keys, the others) of a flattened config."""
    teacher = {k: v for k, v in flat.items() if k.split(".", 1)[0] == "teacher"}
    return teacher, {k: v for k, v in flat.items() if k not in teacher}


def pool_runs(configs: list[dict[str, Any] | None], paths: list[Path]) -> list[tuple[list[int], str, str]]:
    """(member indices, label, why) per setting: runs join one when their configs are the same apart from seed and
    output_dir, or apart from the teacher's entry too when their teachers' weights files have the same SHA-256.
    The label names the config keys in which the settings differ ('' when none does)."""
    from kdkit.run.meta import weights_sha256

    flats = [flatten(c) if c is not None else {"run": json.dumps(str(p))} for c, p in zip(configs, paths, strict=True)]
    shas = [weights_sha256(p, "teacher") if c is not None else None for c, p in zip(configs, paths, strict=True)]
    root = list(range(len(flats)))

    def find(i: int) -> int:
        while root[i] != i:
            i = root[i]
        return i

    by_weights: set[int] = set()
    for j in range(len(flats)):
        for i in range(j):
            same_config = flats[i] == flats[j]
            same_teacher = shas[i] is not None and shas[i] == shas[j] and \
                _teacher_part(flats[i])[1] == _teacher_part(flats[j])[1]
            if (same_config or same_teacher) and find(i) != find(j):
                root[max(find(i), find(j))] = min(find(i), find(j))
                if not same_config:
                    by_weights.update((i, j))
    members: dict[int, list[int]] = {}
    for index in range(len(flats)):
        members.setdefault(find(index), []).append(index)
    groups = list(members.values())
    shared = [{k: v for k, v in flats[g[0]].items() if all(flats[m].get(k) == v for m in g)} for g in groups]
    stable = [k for k in dict.fromkeys(k for f in flats for k in f)
              if all(all(flats[m].get(k) == flats[g[0]].get(k) for m in g) for g in groups)]
    differing = sorted(k for k in stable if len({c.get(k) for c in shared}) > 1)
    out = []
    for group, common in zip(groups, shared, strict=True):
        label = ", ".join(f"{k}={common.get(k, 'unset')}" for k in differing)
        out.append((group, label, _why(group, by_weights, shas, paths)))
    return out


def _why(group: list[int], by_weights: set[int], shas: list[str | None], paths: list[Path]) -> str:
    names = [Path(paths[m]).name for m in group]
    if len(group) == 1:
        return f"{names[0]} alone"
    pooled = [m for m in group if m in by_weights]
    if not pooled:
        return f"{', '.join(names)}: the same {CONFIG} apart from seed and output_dir"
    sha = shas[pooled[0]] or ""
    same = [Path(paths[m]).name for m in group if shas[m] == sha]
    return (f"{', '.join(names)}: the same {CONFIG} apart from seed, output_dir and the teacher's entry "
            f"(teacher.checkpoint: where its weights were loaded from); {', '.join(same)} have the same teacher "
            f"weights (SHA-256 {sha[:12]})")


def _short_id(index: int) -> str:
    """A, B, ..., Z, AA, AB, ..."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _default_label(run: RunData) -> str:
    cfg = run.config or {}
    names = [cfg.get(role, {}).get("name") for role in ("teacher", "student")]
    return f"{names[0]} -> {names[1]}" if all(names) else run.path.name


def stats(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof=1); no std from a single run."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), (float(arr.std(ddof=1)) if len(arr) > 1 else None)


def summarize(group: Group) -> list[dict[str, Any]]:
    """Per model role: n and (mean, std) of every compared key over the group's runs."""
    out = []
    for i, role in enumerate(ROLES):
        row: dict[str, Any] = {"role": role, "n": len(group.rows)}
        for key in KEYS:
            values = [rows[i][key] for rows in group.rows if rows[i].get(key) is not None]
            row[key] = stats(values) if values else None
        out.append(row)
    return out


def _cell(key: str, value: tuple[float, float | None] | None) -> str:
    if value is None:
        return "-"
    mean, std = value
    if key in INTEGER_KEYS:  # e.g. parameter counts: the same for every seed, show the count alone
        mean, std = round(mean), (None if not std else round(std))
    fmt = COLUMNS[key][1]
    return fmt(mean) if std is None else f"{fmt(mean)} ± {fmt(std)}"


def build_compare_document(groups: list[Group]) -> Document:
    headers = ["id", "model", "runs"] + [COLUMNS[k][0] for k in KEYS]
    rows, points = [], []
    palette = [f"C{i}" for i in range(10)]
    for g_index, group in enumerate(groups):
        for row in summarize(group):
            rows.append([group.id, LABELS[row["role"]], str(row["n"])] + [_cell(k, row[k]) for k in KEYS])
            if row["latency_ms"] and row["accuracy"]:
                points.append({"label": f"{group.id}: {LABELS[row['role']]}",
                               "latency_ms": row["latency_ms"][0], "latency_std": row["latency_ms"][1],
                               "accuracy": row["accuracy"][0], "accuracy_std": row["accuracy"][1],
                               "color": palette[g_index % len(palette)], "marker": MARKERS[row["role"]]})
    n_runs = sum(len(g.runs) for g in groups)
    table = Table(headers, rows, caption="test data; mean ± sample standard deviation over the runs of a setting")
    sections = [Section("Runs side by side", [
        Text(f"{n_runs} runs in {len(groups)} settings. Runs whose {CONFIG} differs only by seed (and output "
             f"directory) are pooled; quality and fidelity come from each run's {PREDICTIONS}, latency and "
             f"parameters from its {RESULTS}."),
        table,
        Table(["id", "setting", "processes x batch", "pooled", "run directories"],
              [[g.id, g.label, _processes(g), g.why, ", ".join(str(r.path) for r in g.runs)] for g in groups],
              caption="settings: the config keys in which they differ; processes x batch: the distillation's "
                      "effective batch (torchrun splits each batch over the processes); pooled: which runs and why"),
    ]), seeds_section(groups)]
    notes = [f"{r.path}: {note}" for g in groups for r in g.runs for note in r.notes]
    notes += [f"{r.path} has no {CONFIG}, so it is not pooled with other seeds" for g in groups for r in g.runs
              if r.config is None]
    sections[0].blocks += [Text(n, note=True) for n in notes]
    if points:
        sections.append(Section("Accuracy vs latency", [Image(
            "tradeoff", figures.tradeoff(points, "accuracy vs latency, all settings"), "accuracy against latency",
            "Markers: square = teacher, triangle = student alone, circle = distilled student; one colour per "
            "setting; bars are ± one standard deviation over seeds.")]))
    return Document("kdkit compare", f"{n_runs} runs, {len(groups)} settings", sections)


def _processes(group: Group) -> str:
    """'2 x 128 = 256' from results.json's training record (distillation stage), one entry per distinct value;
    '?' for runs written before it was saved."""
    seen = []
    for run in group.runs:
        training = run.results.get("training")
        if not training:
            text = "?"
        else:
            n, per = training["processes"], training["batch_size"]["distill"]
            text = f"{n} x {per} = {n * per}"
        if text not in seen:
            seen.append(text)
    return ", ".join(seen)


@dataclass
class CompareFiles:
    html: Path
    markdown: Path
    verdicts: list[str] = field(default_factory=list)  # one line per setting, for the terminal
    groups: list[str] = field(default_factory=list)  # one line per setting: which runs were pooled, and why


def unique_runs(run_dirs: list[str | Path]) -> list[Path]:
    """The run directories, each once (a run given twice must not count twice); RunDirError when there are none."""
    if not run_dirs:
        raise RunDirError("no run directories given; pass one or more directories written by `kdkit demo`/`train`")
    return list(dict.fromkeys(Path(d).resolve() for d in run_dirs))


def write_compare(run_dirs: list[str | Path], output_dir: str | Path) -> CompareFiles:
    """Load every classification (or tabular) run (RunDirError names the first incomplete one), group them and write
    the comparison (kdkit.families.runs.write_compare hands each family its own runs)."""
    runs = [load_run(d) for d in unique_runs(run_dirs)]
    groups = group_runs(runs)
    doc = build_compare_document(groups)
    out = Path(output_dir)
    (out / FIGURE_DIR).mkdir(parents=True, exist_ok=True)
    for img in doc.images():
        (out / FIGURE_DIR / f"{img.name}.png").write_bytes(img.png)
    files = CompareFiles(out / COMPARE_HTML, out / COMPARE_MARKDOWN,
                         [f"{g.id} ({g.label}): {group_verdict(g)[0].headline}" for g in groups],
                         [f"{g.id}: {g.why}" for g in groups])
    write_atomic(files.html, render_html(doc))
    write_atomic(files.markdown, render_markdown(doc, FIGURE_DIR))
    return files
