"""Were the diagnosis rules right? The verdict each cell's signals predict, scored against the verdict measured.

kdkit.diagnosis reads signals that every run measures before its distilled student is judged (the teacher's and
the student alone's accuracy and confidence, the sizes, the unlabelled pool) and predicts a verdict: gain, no
measurable difference, or loss. Its rules and thresholds were chosen on the benchmarks that came before the regime
map (fashion_mnist, image_folder, text_real, tabular, demo_recipes: the evidence in each rule's docstring). They are
scored here on cells none of them was chosen on, and nothing is fitted per cell:

- every cell of the regime map (bench/kd_regimes.py) whose distilled row and student alone have at least two seeds
  on disk: the signals from the saved teacher and students (training inputs: the row's own, pool included;
  held-out: the validation split), the measured verdict from the paired test-accuracy differences over seeds
  (kdkit.verdict.seeds_verdict, 95% t-interval);
- any kdkit run directory given with --runs: the diagnosis and the verdict its results.json holds; runs of a setting
  a rule cites as its evidence go with --chosen-runs instead, and are listed apart, outside the score.

Target, stated before scoring: the predicted verdict matches the measured one in at least 80% of the cells.

    OMP_NUM_THREADS=1 python bench/diagnosis_score.py [--map-out runs/bench_kd_regimes] [--runs RUN ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kd_regimes as kr  # noqa: E402
from _protocol import n_params  # noqa: E402
from _results import write_section  # noqa: E402

from kdkit.data import make_loader  # noqa: E402
from kdkit.diagnosis import Split, diagnose, prediction_signals  # noqa: E402
from kdkit.io.checkpoint import load_weights  # noqa: E402
from kdkit.trainer.loop import predict  # noqa: E402
from kdkit.verdict import GAIN, LOSS, NONE, seeds_verdict  # noqa: E402

KINDS = (GAIN, NONE, LOSS)
TARGET = 0.80


@dataclass
class Cell:
    """One scored cell: its name, where it comes from, the first rule that applied, and both verdicts."""

    name: str
    source: str
    rule: str
    predicted: str
    measured: str
    measured_text: str


def logits_on(model: torch.nn.Module, dataset) -> np.ndarray:
    logits, _ = predict(model, make_loader(dataset, 1024, shuffle=False), torch.device("cpu"))
    return np.asarray(logits)


def saved_student(row: kr.Row, path: Path, seed: int) -> torch.nn.Module | None:
    weights = path.with_suffix(".safetensors")
    if not weights.exists():
        return None
    model = kr.new_student(row, seed)
    load_weights(model, weights)
    return model.eval()


def map_cells(out: Path) -> list[Cell]:
    """The regime map's cells with two or more seeds of saved students, each with its prediction and verdict."""
    args = kr.parse_args(["--out", str(out), "--report-only"])
    kr.check_methods(args)
    data = kr.load_data(kr.Scale())
    rows = kr.map_rows(kr.Scale(), args.students) + kr.method_rows(kr.Scale(), args.methods)
    results, teachers, tuned = kr.run(args, data, rows, out)
    cells, logits_cache = [], {}
    for row in rows:
        if row.teacher is None or row not in tuned or row.alone not in tuned:
            continue
        cell = score_map_cell(row, args, data, out, results, teachers, tuned, logits_cache)
        if cell is not None:
            cells.append(cell)
    return cells


def score_map_cell(row, args, data, out, results, teachers, tuned, cache) -> Cell | None:
    seeds = [s for s in args.seeds if (row.name, s) in results and (row.alone.name, s) in results]
    paths = {s: kr.row_job(row.alone, s, tuned[row.alone]["values"], data, args, out, teachers)[0] for s in seeds}
    alone = {s: m for s in seeds if (m := saved_student(row.alone, paths[s], s)) is not None}
    if len(alone) < 2:
        return None
    teacher_path = kr.teacher_of(row, data, args, out)
    teacher = teachers[teacher_path]
    train_set, key = kr.row_dataset(row, data), (teacher_path, row.pool, row.labels)
    if key not in cache:  # the teacher's logits on a row's inputs are shared by the rows with the same inputs
        cache[key] = logits_on(teacher, train_set), logits_on(teacher, data.val)
    teacher_train, teacher_val = cache[key]
    train_labels = train_set.tensors[1].numpy()
    val_labels = data.val.tensors[1].numpy()
    n_pool = len(data.full) - row.labels if row.pool else 0
    ratio = n_params(teacher) / n_params(next(iter(alone.values())))
    predicted = []
    for model in alone.values():
        a_train, a_val = logits_on(model, train_set), logits_on(model, data.val)
        # the rules read only what is known before the distilled student is judged: the alone row stands in for it
        signals = prediction_signals(
            "classification", "validation split",
            Split({"teacher": teacher_train, "student_alone": a_train, "student_kd": a_train}, train_labels),
            Split({"teacher": teacher_val, "student_alone": a_val, "student_kd": a_val}, val_labels),
            n_train=row.labels, n_pool=n_pool, capacity_ratio=ratio)
        found = diagnose(signals)
        predicted.append((found.predicted, found.findings[0].rule))
    (kind, rule), _ = Counter(predicted).most_common(1)[0]
    diffs = [results[(row.name, s)]["accuracy"] - results[(row.alone.name, s)]["accuracy"] for s in alone]
    verdict = seeds_verdict(diffs)
    return Cell(row.name, "regime map", rule, kind, verdict.kind,
                f"{100 * verdict.difference:+.2f} ({100 * verdict.low:+.2f} to {100 * verdict.high:+.2f}), "
                f"{len(diffs)} seeds")


def run_cells(run_dirs: list[Path], source: str = "run directory") -> list[Cell]:
    """Cells from kdkit run directories: the diagnosis and the verdict their results.json saved."""
    cells = []
    for run in run_dirs:
        results = json.loads((run / "results.json").read_text())
        diagnosis, verdict = results.get("diagnosis"), results.get("verdict")
        if not diagnosis or not verdict:
            print(f"skipped {run}: no diagnosis or verdict in results.json", file=sys.stderr)
            continue
        cells.append(Cell(run.name, source, diagnosis["advice"][0]["rule"], diagnosis["predicted"],
                          verdict["kind"], verdict.get("headline", verdict["kind"])))
    return cells


def confusion(cells: list[Cell]) -> str:
    counts = Counter((c.predicted, c.measured) for c in cells)
    lines = ["| predicted \\ measured | " + " | ".join(KINDS) + " |", "|---" * (len(KINDS) + 1) + "|"]
    lines += [f"| {p} | " + " | ".join(str(counts[(p, m)]) for m in KINDS) + " |" for p in KINDS]
    return "\n".join(lines)


def report(cells: list[Cell], seconds: float, chosen: list[Cell] | None = None) -> str:
    right = sum(c.predicted == c.measured for c in cells)
    share = right / len(cells) if cells else float("nan")
    hit = "**hit**" if cells and share >= TARGET else "**missed**"
    lines = [f"{len(cells)} cells scored in {seconds:.0f} s; the prediction matched the measured verdict in "
             f"{right} of {len(cells)} ({100 * share:.0f}%); target >= {100 * TARGET:.0f}%: {hit}.", "",
             confusion(cells), "",
             "| cell | source | first rule | predicted | measured (points, 95% interval) |", "|---" * 5 + "|"]
    lines += [f"| {c.name} | {c.source} | {c.rule} | {c.predicted} | {c.measured}: {c.measured_text} |"
              for c in cells]
    if chosen:
        agree = sum(c.predicted == c.measured for c in chosen)
        lines += ["", f"Outside the score, settings the rules were chosen on ({agree} of {len(chosen)} matched):", "",
                  "| cell | first rule | predicted | measured |", "|---" * 4 + "|"]
        lines += [f"| {c.name} | {c.rule} | {c.predicted} | {c.measured}: {c.measured_text} |" for c in chosen]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--map-out", type=Path, default=Path("runs/bench_kd_regimes"),
                        help="the --out of bench/kd_regimes.py (skipped when missing)")
    parser.add_argument("--runs", type=Path, nargs="*", default=[], help="kdkit run directories to score too")
    parser.add_argument("--chosen-runs", type=Path, nargs="*", default=[],
                        help="run directories of settings the rules were chosen on: listed, not scored")
    parser.add_argument("--print-only", action="store_true", help="do not write bench/RESULTS.md")
    args = parser.parse_args()
    start = time.perf_counter()
    cells = (map_cells(args.map_out) if (args.map_out / "tuned").is_dir() else []) + run_cells(args.runs)
    chosen = run_cells(args.chosen_runs, "rules chosen on it")
    body = report(cells, time.perf_counter() - start, chosen)
    print(body)
    if not args.print_only and cells:
        command = " ".join(["OMP_NUM_THREADS=1 python bench/diagnosis_score.py", *sys.argv[1:]])
        write_section("diagnosis_score", body, command)


if __name__ == "__main__":
    main()
