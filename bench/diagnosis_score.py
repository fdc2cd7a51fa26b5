"""Were the diagnosis rules right? The verdict each cell's signals predict, scored against the verdict measured.

kdkit.diagnosis reads signals that every run measures before its distilled student is judged (the teacher's and
the student alone's accuracy and confidence, the sizes, the unlabelled pool) and predicts a verdict: gain, no
measurable difference, or loss. The first version of its rules was chosen on the benchmarks that came before the
regime map (the evidence in each rule's docstring) and scored on the regime map and the first diagnosis cells; the
second version (a teacher must lead by 3 points) was chosen on those, which then go with --map-chosen and the
--chosen-* options, and is scored on fresh cells (bench/diagnosis_runs.py). Nothing is fitted per cell. Inputs:

- every cell of the regime map (bench/kd_regimes.py) whose distilled row and student alone have at least two seeds
  on disk: the signals from the saved teacher and students (training inputs: the row's own, pool included;
  held-out: the validation split), the measured verdict from the paired test-accuracy differences over seeds
  (kdkit.verdict.seeds_verdict, 95% t-interval);
- any kdkit run directory given with --runs: the diagnosis and the verdict its results.json holds (one run: its
  paired bootstrap over test samples);
- kdkit run directories given with --seed-runs, one cell per parent folder (OUT/<cell>/seed<N>, as
  bench/diagnosis_runs.py writes them): the rules applied to each seed's saved signals (the cell's prediction: the
  most common over its seeds), the measured verdict from the per-seed paired differences of the metric the runs'
  verdicts compare (kdkit.verdict.seeds_verdict);
- the per-seed files of the paired benchmarks (bench/methods.py, bench/schemes.py: seed<N>.json, --paired-seeds),
  one cell per row and folder: the rules applied to the student alone's saved signals (the teacher and the
  student alone on the training and validation splits), the verdict from the row's paired differences with the
  student alone over seeds; --skip-rows leaves out rows the rules cannot speak for (a scheme that never sees the
  benchmark's teacher).

Inputs of settings a rule cites as its evidence go with --chosen-runs, --chosen-seed-runs or --chosen-paired-seeds
instead, and are listed apart, outside the score.

Target, stated before scoring: the predicted verdict matches the measured one in at least 80% of the cells.

    OMP_NUM_THREADS=1 python bench/diagnosis_score.py [--map-out runs/bench_kd_regimes] [--map-chosen]
        [--runs RUN ...] [--seed-runs RUN ...] [--paired-seeds SEED_JSON ...] [--chosen-seed-runs RUN ...]
        [--chosen-paired-seeds SEED_JSON ...] [--signals-out FILE] [--print-only]

A cell over seeds predicts what most of its seeds predict; a tie goes to "no measurable difference" (the most common
measured verdict, so a tie flatters the score a little; with 3 seeds and no rule predicting a loss, none occurs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kd_regimes as kr  # noqa: E402
from _protocol import ALONE, n_params  # noqa: E402
from _results import write_section  # noqa: E402

from kdkit.data import make_loader  # noqa: E402
from kdkit.diagnosis import Diagnosis, Signals, Split, diagnose, prediction_signals  # noqa: E402
from kdkit.io.checkpoint import load_weights  # noqa: E402
from kdkit.trainer.loop import predict  # noqa: E402
from kdkit.verdict import ACCURACY, EXACT_MATCH, GAIN, LOSS, NONE, TOKEN_ACCURACY, seeds_verdict  # noqa: E402

KINDS = (GAIN, NONE, LOSS)
# a saved verdict names its metric in words; the rows hold it under its key
METRIC_KEYS = {m.words: m.key for m in (ACCURACY, EXACT_MATCH, TOKEN_ACCURACY)}
TARGET = 0.80
MIN_SEEDS = 3  # a cell over seeds (--seed-runs, --paired-seeds) needs this many paired seeds to be scored


@dataclass
class Cell:
    """One scored cell: its name, where it comes from, the first rule that applied, and both verdicts."""

    name: str
    source: str
    rule: str
    predicted: str
    measured: str
    measured_text: str
    signals: list[dict] = field(default_factory=list)  # each seed's signals, the rules' input (--signals-out)
    diffs: list[float] = field(default_factory=list)  # each seed's paired difference


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
    found = []
    for model in alone.values():
        a_train, a_val = logits_on(model, train_set), logits_on(model, data.val)
        # the rules read only what is known before the distilled student is judged: the alone row stands in for it
        signals = prediction_signals(
            "classification", "validation split",
            Split({"teacher": teacher_train, "student_alone": a_train, "student_kd": a_train}, train_labels),
            Split({"teacher": teacher_val, "student_alone": a_val, "student_kd": a_val}, val_labels),
            n_train=row.labels, n_pool=n_pool, capacity_ratio=ratio)
        found.append(diagnose(signals))
    diffs = [results[(row.name, s)]["accuracy"] - results[(row.alone.name, s)]["accuracy"] for s in alone]
    return seeds_cell(row.name, "regime map", found, diffs)


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


def majority(kinds: list[str]) -> tuple[str, int]:
    """The most common predicted verdict and how many seeds gave it; a tie goes to "no measurable difference" when
    it is among the tied, else to the first in KINDS: never to the order of the files."""
    counts = Counter(kinds)
    top = max(counts.values())
    tied = [k for k in KINDS if counts[k] == top]
    return (NONE if NONE in tied else tied[0]), top


def seeds_cell(name: str, source: str, found: list[Diagnosis], diffs: list[float]) -> Cell:
    """One cell over seeds: the most common prediction of the seeds' diagnoses (majority), with the first rules of
    the seeds (how many seeds each, when not all agree) and how many seeds predicted it; the verdict of the paired
    differences (seeds_verdict's 95% t-interval)."""
    kind, agree = majority([d.predicted for d in found])
    rules = Counter(d.findings[0].rule for d in found).most_common()
    rule = rules[0][0] if len(rules) == 1 else ", ".join(f"{r} ({n})" for r, n in rules)
    if agree < len(found):
        rule += f"; {agree} of {len(found)} seeds predict it"
    verdict = seeds_verdict(diffs)
    return Cell(name, source, rule, kind, verdict.kind,
                f"{100 * verdict.difference:+.2f} ({100 * verdict.low:+.2f} to {100 * verdict.high:+.2f}), "
                f"{len(diffs)} seeds", [d.signals.as_dict() for d in found], list(diffs))


def seed_run_cells(run_dirs: list[Path], source: str = "") -> list[Cell]:
    """Cells of kdkit runs over seeds, one per parent folder: each run's saved signals read by the rules as they
    are now, and its distilled minus alone score (the metric its verdict compares) as one paired difference. The
    source is `source`, or the folder name up to its first underscore (demo_text_quick: demo)."""
    groups: dict[Path, list[tuple[Diagnosis, float]]] = defaultdict(list)
    for run in run_dirs:
        saved = run / "results.json"
        results = json.loads(saved.read_text()) if saved.exists() else {}  # none yet: a run still going
        diagnosis, verdict = results.get("diagnosis"), results.get("verdict")
        if not diagnosis or not verdict:
            print(f"skipped {run}: no diagnosis or verdict in results.json", file=sys.stderr)
            continue
        rows = {row["role"]: row for row in results["rows"]}
        metric = METRIC_KEYS[verdict.get("metric", ACCURACY.words)]
        diff = rows["student_kd"][metric] - rows["student_alone"][metric]
        groups[run.parent].append((Diagnosis.from_dict(diagnosis), diff))
    return [seeds_cell(folder.name, source or folder.name.split("_")[0], [d for d, _ in pairs], [x for _, x in pairs])
            for folder, pairs in groups.items() if len(pairs) >= MIN_SEEDS]


def paired_seed_cells(files: list[Path], skip: tuple[str, ...] = (), source: str = "") -> list[Cell]:
    """Cells of a paired benchmark's per-seed files (bench/_protocol.run_paired_seed), one per row and folder: the
    rules read the student alone's signals of each seed; the verdict is the row minus the student alone, paired by
    seed. Rows in `skip` and rows with fewer than MIN_SEEDS seeds are left out."""
    by_folder: dict[Path, list[dict]] = defaultdict(list)
    for path in files:
        by_folder[path.parent].append(json.loads(path.read_text()))
    cells = []
    for folder, seeds in by_folder.items():
        seeds = [s for s in seeds if "signals" in s.get(ALONE, {})]
        found = [diagnose(Signals.from_dict(s[ALONE]["signals"])) for s in seeds]
        bench = next((p.name for p in folder.parents if p.name.startswith("bench_")), folder.parent.name)
        data = "" if folder.parent.name == bench else f"{folder.parent.name}: "  # methods.py: one folder per data set
        rows = sorted({row for s in seeds for row in s} - {"teacher", ALONE, *skip})
        for row in rows:
            have = [i for i, s in enumerate(seeds) if row in s]
            if len(have) >= MIN_SEEDS:
                diffs = [seeds[i][row]["accuracy"] - seeds[i][ALONE]["accuracy"] for i in have]
                cells.append(seeds_cell(f"{data}{row}", source or bench.removeprefix("bench_"),
                                        [found[i] for i in have], diffs))
    return cells


def confusion(cells: list[Cell]) -> str:
    counts = Counter((c.predicted, c.measured) for c in cells)
    lines = ["| predicted \\ measured | " + " | ".join(KINDS) + " |", "|---" * (len(KINDS) + 1) + "|"]
    lines += [f"| {p} | " + " | ".join(str(counts[(p, m)]) for m in KINDS) + " |" for p in KINDS]
    return "\n".join(lines)


def context(cells: list[Cell]) -> list[str]:
    """The score per source, and what a constant prediction would score: with few seeds most measured verdicts are
    "no measurable difference", which a rule predicting it everywhere matches without reading any signal."""
    if not cells:
        return []
    by_source: dict[str, list[Cell]] = defaultdict(list)
    for c in cells:
        by_source[c.source].append(c)
    parts = [f"{source} {sum(c.predicted == c.measured for c in group)} of {len(group)}"
             for source, group in by_source.items()]
    constant = {kind: sum(c.measured == kind for c in cells) for kind in KINDS}
    caught = {kind: sum(c.measured == kind and c.predicted == kind for c in cells) for kind in KINDS}
    return [f"- matched per source: {'; '.join(parts)}.",
            "- predicted right, per measured verdict: " + "; ".join(
                f"{kind} {caught[kind]} of {n}" for kind, n in constant.items()) + ".",
            "- a constant prediction, for comparison: " + "; ".join(
                f"{kind} everywhere would match {n} of {len(cells)} ({100 * n / len(cells):.0f}%)"
                for kind, n in constant.items()) + "."]


def lead_text(cell: Cell) -> str:
    """The teacher's held-out lead over the student alone (points), the mean over the cell's seeds ("-": unknown)."""
    leads = [s["teacher_accuracy_held_out"] - s["alone_accuracy_held_out"] for s in cell.signals
             if s.get("teacher_accuracy_held_out") is not None and s.get("alone_accuracy_held_out") is not None]
    return f"{100 * float(np.mean(leads)):+.1f}" if leads else "-"


def report(cells: list[Cell], seconds: float, chosen: list[Cell] | None = None) -> str:
    right = sum(c.predicted == c.measured for c in cells)
    share = right / len(cells) if cells else float("nan")
    hit = "**hit**" if cells and share >= TARGET else "**missed**"
    lines = [f"{len(cells)} cells scored in {seconds:.0f} s; the prediction matched the measured verdict in "
             f"{right} of {len(cells)} ({100 * share:.0f}%); target >= {100 * TARGET:.0f}%: {hit}.", "",
             *context(cells), "", confusion(cells), "",
             "| cell | source | teacher lead | first rule | predicted | measured (points, 95% interval) |",
             "|---" * 6 + "|"]
    lines += [f"| {c.name} | {c.source} | {lead_text(c)} | {c.rule} | {c.predicted} | {c.measured}: "
              f"{c.measured_text} |" for c in cells]
    if chosen:
        agree = sum(c.predicted == c.measured for c in chosen)
        lines += ["", f"Outside the score, settings the rules were chosen on ({agree} of {len(chosen)} matched):", "",
                  "| cell | source | teacher lead | first rule | predicted | measured |", "|---" * 6 + "|"]
        lines += [f"| {c.name} | {c.source} | {lead_text(c)} | {c.rule} | {c.predicted} | {c.measured}: "
                  f"{c.measured_text} |" for c in chosen]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--map-out", type=Path, default=Path("runs/bench_kd_regimes"),
                        help="the --out of bench/kd_regimes.py (skipped when missing)")
    parser.add_argument("--map-chosen", action="store_true",
                        help="the regime map's cells are settings the rules were chosen on: listed, not scored")
    parser.add_argument("--runs", type=Path, nargs="*", default=[], help="kdkit run directories to score too")
    parser.add_argument("--chosen-runs", type=Path, nargs="*", default=[],
                        help="run directories of settings the rules were chosen on: listed, not scored")
    parser.add_argument("--seed-runs", type=Path, nargs="*", default=[],
                        help="kdkit run directories OUT/<cell>/seed<N>: one cell per parent folder, paired over seeds")
    parser.add_argument("--chosen-seed-runs", type=Path, nargs="*", default=[],
                        help="the same, of settings the rules were chosen on: listed, not scored")
    parser.add_argument("--paired-seeds", type=Path, nargs="*", default=[],
                        help="per-seed files of bench/methods.py or bench/schemes.py: one cell per row and folder")
    parser.add_argument("--chosen-paired-seeds", type=Path, nargs="*", default=[],
                        help="the same, of benchmarks the rules were chosen on: listed, not scored")
    parser.add_argument("--skip-rows", nargs="*", default=[], help="rows of --paired-seeds files to leave out")
    parser.add_argument("--print-only", action="store_true", help="do not write bench/RESULTS.md")
    parser.add_argument("--signals-out", type=Path,
                        help="write every cell (scored and chosen-on) with its seeds' signals to this JSON file")
    args = parser.parse_args()
    start = time.perf_counter()
    skip = tuple(args.skip_rows)
    on_map = map_cells(args.map_out) if (args.map_out / "tuned").is_dir() else []
    cells = ([] if args.map_chosen else on_map) + run_cells(args.runs) + seed_run_cells(args.seed_runs) \
        + paired_seed_cells(args.paired_seeds, skip)
    chosen = ((on_map if args.map_chosen else []) + run_cells(args.chosen_runs, "run directory")
              + seed_run_cells(args.chosen_seed_runs) + paired_seed_cells(args.chosen_paired_seeds, skip))
    body = report(cells, time.perf_counter() - start, chosen)
    if args.signals_out:
        saved = [{**asdict(c), "scored": scored} for group, scored in ((cells, True), (chosen, False)) for c in group]
        args.signals_out.write_text(json.dumps(saved, indent=1))
    print(body)
    if not args.print_only and cells:
        command = " ".join(["OMP_NUM_THREADS=1 python bench/diagnosis_score.py", *sys.argv[1:]])
        write_section("diagnosis_score", body, command)


if __name__ == "__main__":
    main()
