"""Training schemes on MNIST-1D, each tuned with the same budget, then paired over seeds.

    OMP_NUM_THREADS=2 python bench/schemes.py              # everything in one process; writes the "schemes" section
    OMP_NUM_THREADS=2 python bench/schemes.py --quick      # smoke test: 1 seed, 2 epochs, 2 trials, nothing written
    # the same, faster: two single-thread processes side by side (they split the searches between them through
    # lock files, then train their own seeds), then one process that writes the section from their files
    for s in "0 2 4 6 8 10" "1 3 5 7 9 11"; do OMP_NUM_THREADS=1 python bench/schemes.py --seeds $s --print-only & done
    wait; OMP_NUM_THREADS=2 python bench/schemes.py --report-only

Runtime on 2 free cores, estimated (this script has not been run in full yet) from the CPU seconds of a --quick run
and of a one-seed, one-trial run with the full schedule on the shared 2-core VM (166 CPU s in all): about 60 CPU s
per seed (the mutual-learning row with a teacher-size peer 20 s of it, the assistant chain 15 s), the searches about
as much as 8 seeds, the two teachers about 30 s; so about 20 min in one process and about 11 min as two
single-thread processes.

Rows: the teacher, the student alone, offline KD from the teacher, Deep Mutual Learning with a peer of the
student's size and with a peer of the teacher's size (both trained from scratch with the student), self-distillation
from an EMA of the student's weights, KD from two teachers (two initialisations of the teacher, probabilities
averaged), and KD through a teacher assistant of intermediate width (teacher -> assistant -> student).

Protocol (the same as bench/fashion_mnist.py and bench/methods.py; the test split is read only at the end):
1. The data split (validation carve-out) is fixed by data seed 0; the teacher and the second teacher are trained once
   on the training split and saved.
2. Tuning, the same budget for every row, scored by validation accuracy (`kdkit tune`, TPE, median pruning where a
   scheme trains in one stage, `--trials` trials each, the full training split and schedule): the student alone
   first, over its learning rate, which every row then shares; then each scheme over its own knobs (KD's T and
   label weight; mutual learning's T and label weight; the EMA's decay too for self-distillation). With 8 trials
   Optuna's TPE is still in its random start-up (10 trials, seeded by the config's seed): rows with the same space
   are tried at the same candidate values.
3. With the tuned values, every row trains the same student for `--epochs` epochs, once per seed, through the same
   code as a `kdkit tune` trial. Rows are paired: within a seed every row starts from the same initial weights and
   sees the same batch order (a fresh loader per row; the assistant chain replays the order for each stage). The
   seed also initialises the peers and the assistant. The student ends at its last epoch: no epoch is picked on
   validation data.
4. Test metrics (agreement and predictive KL against the first teacher); per-seed paired differences (scheme -
   student alone) with their standard error; gap closed = (scheme - alone) / (teacher - alone); each scheme's
   verdict is kdkit's verdict over seeds (the 95% t-interval of its paired differences).

Seeds: 12 by default, for the reason given in bench/methods.py (a pooled per-seed spread of about 1.4 points in the
earlier runs: over 12 seeds a 95% interval of about +/- 0.9 points, so a 1-point paired effect is visible).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _protocol import (  # noqa: E402
    ALONE,
    ALPHA_RANGE,
    T_RANGE,
    base_config,
    load_model,
    n_params,
    power_note,
    report_command,
    run_paired_seed,
    table,
    teacher_once,
    tune_rows,
    verdict,
    with_values,
)
from _results import write_section  # noqa: E402

from kdkit.data import build_data  # noqa: E402
from kdkit.models import build_model  # noqa: E402
from kdkit.trainer.settings import TrainSettings  # noqa: E402

DATA = {"name": "mnist1d", "val_fraction": 0.1}
TEACHER = {"name": "cnn1d", "params": {"width": 64, "depth": 3, "kernel": 5}}
STUDENT = {"name": "cnn1d", "params": {"width": 8, "depth": 3, "kernel": 3}}
ASSISTANT = {"name": "cnn1d", "params": {"width": 24, "depth": 3, "kernel": 3}}
KD = [{"name": "kd", "T": 4.0, "alpha": 0.1}]
ALPHA = ALPHA_RANGE
KD_SPACE = {"distill.losses.0.T": T_RANGE, "distill.losses.0.alpha": ALPHA}
MUTUAL_SPACE = {"distill.scheme.T": T_RANGE, "distill.scheme.alpha": ALPHA}


def schemes(teacher2: Path) -> dict[str, dict[str, Any]]:
    """Each row's distill section (its starting values: the papers' or the demo's) and its search space."""
    def row(scheme: dict[str, Any], space: dict[str, Any], losses: list | None = KD, cache: bool = False) -> dict:
        distill = {"scheme": scheme, "use_transfer": False, "cache_teacher": cache}
        return {"distill": distill if losses is None else {**distill, "losses": losses}, "space": space}

    return {
        "offline KD": row({"name": "offline"}, KD_SPACE, cache=True),
        "mutual learning, student-size peer": row({"name": "mutual", "peers": [STUDENT]}, MUTUAL_SPACE, None),
        "mutual learning, teacher-size peer": row({"name": "mutual", "peers": [TEACHER]}, MUTUAL_SPACE, None),
        "self-distillation, EMA teacher": row(
            {"name": "self_distill", "decay": 0.99},
            {**KD_SPACE, "distill.scheme.decay": {"choices": [0.9, 0.99, 0.999]}}),
        "KD from 2 teachers (mean probabilities)": row(
            {"name": "multi_teacher", "teachers": [{**TEACHER, "checkpoint": str(teacher2)}]}, KD_SPACE, cache=True),
        "KD through a teacher assistant (width 24)": row({"name": "assistants", "assistants": [ASSISTANT]}, KD_SPACE),
    }


def parse_args() -> argparse.Namespace:
    """The options, --schemes checked before any training (one line and exit 2)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(12)))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--teacher-epochs", type=int, default=30)
    parser.add_argument("--trials", type=int, default=8, help="tuning trials per row, the same for every row")
    parser.add_argument("--schemes", nargs="+", help="only these rows (default: every row); names as in the table")
    parser.add_argument("--out", default="runs/bench_schemes")
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 epochs, 2 trials, print only")
    parser.add_argument("--print-only", action="store_true", help="do not write bench/RESULTS.md")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: the table from the rows earlier runs saved in --out")
    args = parser.parse_args()
    unknown = sorted(set(args.schemes or ()) - set(schemes(Path("teacher2"))))  # checked before any training
    if unknown:
        parser.error(f"unknown scheme {unknown[0]!r}; choose from: {', '.join(schemes(Path('teacher2')))}")
    if args.quick:  # its own folder: quick rows must never stand in for a full run's
        args.seeds, args.epochs, args.teacher_epochs, args.trials = [0], 2, 2, 2
        args.out = str(Path(args.out) / "quick")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    start, out = time.perf_counter(), Path(args.out)
    bundle = build_data(DATA, 0)
    settings = TrainSettings(epochs=args.teacher_epochs, batch_size=128, lr=3e-3, seed=0, keep="last",
                             progress=False)
    teacher_path = teacher_once(TEACHER, bundle, settings, out)
    # the second teacher: another initialisation and batch order
    teacher2 = teacher_once(TEACHER, bundle, settings.model_copy(update={"seed": 1}), out, init_seed=1)
    teacher = load_model(TEACHER, bundle, teacher_path)
    base = base_config(DATA, {**TEACHER, "checkpoint": str(teacher_path)}, STUDENT, args.epochs, 3e-3, out)
    rows = {name: row for name, row in schemes(teacher2).items() if not args.schemes or name in args.schemes}
    lr, tuned = tune_rows(base, rows, args.trials, out / f"tuned-{args.trials}x{args.epochs}")
    shared = with_values(base, {"train.lr": lr})
    configs = {ALONE: shared, **{name: with_values({**shared, "distill": row["distill"]}, tuned[name])
                                 for name, row in rows.items()}}
    tune_seconds = time.perf_counter() - start
    seeds_dir = out / f"seeds-{args.trials}x{args.epochs}"
    runs = [run_paired_seed(s, seeds_dir / f"seed{s}.json", configs, STUDENT, bundle, teacher, args.report_only)
            for s in args.seeds]
    sizes = {name: n_params(build_model(spec["name"], bundle.input_shape, bundle.num_classes, **spec["params"]))
             for name, spec in (("teacher", TEACHER), ("assistant", ASSISTANT), ("student", STUDENT))}
    names = list(configs)
    body = "\n".join([
        f"MNIST-1D ({len(bundle.train):,} training, {len(bundle.val):,} validation, {len(bundle.test):,} test "
        f"samples; split fixed by seed 0), teacher `cnn1d` width 64 ({sizes['teacher']:,} parameters, "
        f"{args.teacher_epochs} epochs; the second teacher: the same model from another initialisation and batch "
        f"order), student `cnn1d` width 8 ({sizes['student']:,} parameters), assistant `cnn1d` width 24 "
        f"({sizes['assistant']:,} parameters).",
        "",
        f"Every row tuned by `kdkit tune` with {args.trials} trials (TPE; median pruning for the one-stage schemes) on "
        "the validation split, scored by validation accuracy: the student alone over its learning rate "
        f"(tuned: {lr:.2e}), which every row then shares; each scheme over its own knobs. Then {args.epochs} epochs "
        "per row and seed, AdamW, cosine schedule, batch 128, the last epoch kept (no epoch picked on validation "
        f"data). Seeds {args.seeds}: the seed sets the student's initial weights and batch order, the same for every "
        "row of a seed (paired), and the peers' and assistant's initial weights; the teachers are fixed. "
        + ("Rows were read from the per-seed files of the training runs named in the command." if args.report_only
           else f"Tuning took {tune_seconds:.0f} s, the whole run {time.perf_counter() - start:.0f} s (rows trained "
                "by an earlier run are read from its per-seed files)."),
        "",
        table(runs, names, lambda row: ALONE, lambda row: row not in ("teacher", ALONE), wins=True),
        "",
        f"- {verdict(runs, names[1:])}",
        f"- {power_note(runs, names, ALONE)}",
        "- Tuned values: " + "; ".join(f"{name}: {json.dumps(values)}" for name, values in tuned.items()),
    ])
    print(body)
    if not (args.quick or args.print_only):
        write_section("schemes", body, report_command("schemes.py", sys.argv[1:], args.seeds, args.report_only,
                                                      processes=2))


if __name__ == "__main__":
    main()
