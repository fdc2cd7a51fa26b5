"""Distillation methods on MNIST-1D and digits, each tuned with the same budget, then paired over seeds.

    OMP_NUM_THREADS=2 python bench/methods.py              # everything in one process; writes the "methods" section
    OMP_NUM_THREADS=2 python bench/methods.py --quick      # smoke test: 1 seed, 2 epochs, 2 trials, nothing written
    # the same, faster: two single-thread processes side by side (they split the searches between them through
    # lock files, then train their own seeds), then one process that writes the section from their files
    for s in "0 2 4 6 8 10" "1 3 5 7 9 11"; do OMP_NUM_THREADS=1 python bench/methods.py --seeds $s --print-only & done
    wait; OMP_NUM_THREADS=2 python bench/methods.py --report-only

Runtime on 2 free cores, estimated (this script has not been run in full yet) from the CPU seconds of a --quick run
and of a one-seed, one-trial run with the full schedule on the shared 2-core VM (112 CPU s in all): per seed about
30 CPU s for the MNIST-1D rows and 10 s for digits; the searches cost about as much as 8 seeds; so about 15 min in
one process and 8-10 min as two single-thread processes. Adding "RKD (distance + angle)" adds about 50 min (its
angle term alone costs about 7 CPU s per MNIST-1D epoch, 60x a KD epoch).

Protocol (the same as bench/fashion_mnist.py; nothing reads the test split before the final evaluation):
1. Per data set, the data split (validation carve-out) is fixed by data seed 0 and the teacher is trained once on
   the training split and saved; every row and seed uses it.
2. Tuning, the same budget for every row, scored by validation accuracy (`kdkit tune`, TPE, median pruning,
   `--trials` trials each, the full training split and schedule): the student alone first, over its learning rate;
   that learning rate is then shared by every row, and each method searches its own knobs (temperature, label
   weight, term weights; the search spaces are listed below) with `--trials` trials. So the student alone is
   tuned too, and a paired difference measures what the method's terms add at the same optimiser settings. With
   8 trials Optuna's TPE is still in its random start-up (10 trials, seeded by the config's seed): rows with the
   same space are tried at the same candidate values.
3. With the tuned values, every row trains the same student for `--epochs` epochs, once per seed. Rows are paired:
   within a seed every row starts from the same initial weights and sees the same batch order. The student ends at
   its last epoch: no epoch is picked on validation data (the validation split only serves the search).
4. Test metrics; per-seed paired differences (method - student alone) with their standard error; gap closed =
   (method - alone) / (teacher - alone); each method's verdict is kdkit's verdict over seeds (the 95% t-interval
   of its paired differences: gain, loss or no measurable difference).

Seeds: 12 by default. The per-seed paired differences of the earlier, untuned runs (bench/RESULTS.md, `schemes`)
spread with a pooled standard deviation of about 1.4 points; over 12 seeds that gives a standard error of about
0.4 and a 95% interval of about +/- 0.9 points, so a 1-point paired effect is visible (3 seeds: +/- 3.5 points).
The teacher's outputs (logits and tapped features) are cached per sample, which is exact here: no augmentation.
Students are small CNNs on both data sets, so the feature methods (FitNets, AT) compare maps with a spatial axis.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
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
    log_range,
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


@dataclass(frozen=True)
class Setup:
    """Models of one data set and the module paths the feature terms tap."""

    teacher: dict[str, Any]
    student: dict[str, Any]
    hint: tuple[str, str]  # (student, teacher) paths for FitNets
    attention: tuple[str, str]  # for AT: the largest map with learned features (AT's value grows on small maps)
    relation: tuple[str, str]  # for SP
    embedding: tuple[str, str]  # penultimate features for RKD and PKT


SETUPS = {
    "mnist1d": Setup(
        teacher={"name": "cnn1d", "params": {"width": 64, "depth": 3, "kernel": 5}},
        student={"name": "cnn1d", "params": {"width": 8, "depth": 3, "kernel": 3}},
        hint=("features.1", "features.1"),
        attention=("features.1.2", "features.1.2"),  # block 2's ReLU, before pooling: length 40
        relation=("features.2", "features.2"),
        embedding=("features", "features"),
    ),
    "digits": Setup(
        teacher={"name": "cnn2d", "params": {"width": 32, "depth": 2}},
        student={"name": "cnn2d", "params": {"width": 4, "depth": 2}},
        hint=("features.0", "features.0"),
        attention=("features.0.2", "features.0.2"),  # block 1's ReLU, before pooling: 8x8
        relation=("features.1", "features.1"),
        embedding=("features", "features"),
    ),
}


@dataclass(frozen=True)
class Method:
    """A method's loss terms (starting values: the papers' or the CRD benchmark's weights) and its search space."""

    losses: Callable[[Setup, int], list[dict[str, Any]]]
    space: dict[str, dict[str, Any]]


CE = {"name": "ce"}
ALPHA = ALPHA_RANGE  # KD's weight of the label term: 0 = soft targets only


def _pair(paths: tuple[str, str]) -> dict[str, str]:
    return {"student": paths[0], "teacher": paths[1]}


def _kd(s: Setup, e: int) -> list[dict[str, Any]]:
    return [{"name": "kd", "T": 4.0, "alpha": 0.1}]


METHODS: dict[str, Method] = {
    "KD": Method(_kd, {"distill.losses.0.T": T_RANGE, "distill.losses.0.alpha": ALPHA}),
    # the paper warms DKD up over 20 of 240 epochs; the same fraction of this run's epochs
    "DKD": Method(lambda s, e: [CE, {"name": "dkd", "alpha": 1.0, "beta": 8.0, "T": 4.0,
                                     "warmup_epochs": max(1, round(e * 20 / 240))}],
                  {"distill.losses.1.beta": log_range(0.5, 16.0), "distill.losses.1.T": T_RANGE}),
    "DIST": Method(lambda s, e: [CE, {"name": "dist", "beta": 1.0, "gamma": 1.0, "T": 4.0}],
                   {"distill.losses.1.weight": log_range(0.1, 10.0), "distill.losses.1.T": T_RANGE}),
    "FitNets": Method(lambda s, e: [CE, {"name": "fitnet", "weight": 100.0, **_pair(s.hint)}],
                      {"distill.losses.1.weight": log_range(0.01, 300.0)}),
    "AT": Method(lambda s, e: [CE, {"name": "at", "weight": 1000.0, **_pair(s.attention)}],
                 {"distill.losses.1.weight": log_range(1.0, 3000.0)}),
    # RKD's angle term costs O(batch^3) per step: about 7 CPU s per MNIST-1D epoch here, 60x a KD epoch, so the
    # default runs the distance term alone (as bench/fashion_mnist.py does); the full RKD is one flag away
    "RKD (distance)": Method(lambda s, e: [CE, {"name": "rkd_distance", "weight": 25.0, **_pair(s.embedding)}],
                             {"distill.losses.1.weight": log_range(0.1, 100.0)}),
    "RKD (distance + angle)": Method(
        lambda s, e: [CE, {"name": "rkd_distance", "weight": 25.0, **_pair(s.embedding)},
                      {"name": "rkd_angle", "weight": 50.0, **_pair(s.embedding)}],
        {"distill.losses.1.weight": log_range(0.1, 100.0), "distill.losses.2.weight": log_range(0.1, 100.0)}),
    "SP": Method(lambda s, e: [CE, {"name": "sp", "weight": 3000.0, **_pair(s.relation)}],
                 {"distill.losses.1.weight": log_range(1.0, 10_000.0)}),
    # CRD's 30000 multiplies a mean over the N^2 pairs; kdkit's PKT sums over the N-1 partners: 30000 / batch
    "PKT": Method(lambda s, e: [CE, {"name": "pkt", "weight": 30000.0 / 128, **_pair(s.embedding)}],
                  {"distill.losses.1.weight": log_range(0.1, 1000.0)}),
    "KD + AT": Method(lambda s, e: [*_kd(s, e), {"name": "at", "weight": 1000.0, **_pair(s.attention)}],
                      {"distill.losses.0.T": T_RANGE, "distill.losses.0.alpha": ALPHA,
                       "distill.losses.1.weight": log_range(1.0, 3000.0)}),
}
def prepare(data: str, args: argparse.Namespace, out: Path):
    """The data set's split, its saved teacher and the tuned values of every row (searched once, then reused)."""
    setup = SETUPS[data]
    bundle = build_data({"name": data, "val_fraction": 0.1}, 0)
    settings = TrainSettings(epochs=args.teacher_epochs, batch_size=128, lr=3e-3, seed=0, keep="last",
                             progress=False)
    teacher_path = teacher_once(setup.teacher, bundle, settings, out)
    teacher = load_model(setup.teacher, bundle, teacher_path)
    base = base_config({"name": data, "val_fraction": 0.1}, {**setup.teacher, "checkpoint": str(teacher_path)},
                       setup.student, args.epochs, 3e-3, out)
    rows = {name: {"distill": {"losses": METHODS[name].losses(setup, args.epochs), "use_transfer": False,
                               "cache_teacher": True},
                   "space": METHODS[name].space} for name in args.methods}
    lr, tuned = tune_rows(base, rows, args.trials, out / f"tuned-{args.trials}x{args.epochs}")
    shared = with_values(base, {"train.lr": lr})
    configs = {ALONE: shared, **{name: with_values({**shared, "distill": rows[name]["distill"]}, tuned[name])
                                 for name in args.methods}}
    return setup, bundle, teacher, configs, lr, tuned


def section(data: str, args, setup: Setup, bundle, teacher, runs: list[dict], lr: float, tuned: dict) -> str:
    sizes = [n_params(m) for m in (teacher, build_model(setup.student["name"], bundle.input_shape,
                                                         bundle.num_classes, **setup.student["params"]))]
    rows = [ALONE, *args.methods]
    return "\n".join([
        f"### {data}",
        "",
        f"{len(bundle.train):,} training, {len(bundle.val):,} validation, {len(bundle.test):,} test samples. "
        f"Teacher `{setup.teacher['name']}` {setup.teacher['params']} ({sizes[0]:,} parameters, "
        f"{args.teacher_epochs} epochs, lr 3e-3); student `{setup.student['name']}` {setup.student['params']} "
        f"({sizes[1]:,} parameters). Tuned learning rate of the student alone, shared by every row: {lr:.2e}.",
        "",
        table(runs, rows, lambda row: ALONE, lambda row: row not in ("teacher", ALONE), wins=True),
        "",
        f"- {verdict(runs, args.methods)}",
        f"- {power_note(runs, rows, ALONE)}",
        "- Tuned values: " + "; ".join(f"{m}: {json.dumps(tuned[m])}" for m in args.methods),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(12)))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--teacher-epochs", type=int, default=20)
    parser.add_argument("--trials", type=int, default=8, help="tuning trials per row, the same for every row")
    parser.add_argument("--data", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--methods", nargs="+", choices=list(METHODS),
                        default=[m for m in METHODS if m != "RKD (distance + angle)"],
                        help="default: all but 'RKD (distance + angle)', which alone would triple the run time")
    parser.add_argument("--out", default="runs/bench_methods")
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 epochs, 2 trials, print only")
    parser.add_argument("--print-only", action="store_true", help="do not write bench/RESULTS.md")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: the tables from the rows earlier runs saved in --out")
    args = parser.parse_args()
    if args.quick:  # its own folder: quick rows must never stand in for a full run's
        args.seeds, args.epochs, args.teacher_epochs, args.trials = [0], 2, 2, 2
        args.out = str(Path(args.out) / "quick")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    start = time.perf_counter()
    parts = []
    for data in args.data:
        out = Path(args.out) / data
        setup, bundle, teacher, configs, lr, tuned = prepare(data, args, out)
        print(f"{data}: tuned ({time.perf_counter() - start:.0f} s so far)", flush=True)
        seeds_dir = out / f"seeds-{args.trials}x{args.epochs}"
        runs = [run_paired_seed(s, seeds_dir / f"seed{s}.json", configs, setup.student, bundle, teacher,
                                args.report_only) for s in args.seeds]
        parts.append(section(data, args, setup, bundle, teacher, runs, lr, tuned))
    body = "\n\n".join([
        f"Every row tuned by `kdkit tune` with {args.trials} trials (TPE, median pruning) on the validation split, "
        "scored by validation accuracy: the student alone over its learning rate, which every row then shares; each "
        f"method over its own knobs. Then {args.epochs} epochs per row and seed, AdamW, cosine schedule, batch 128, "
        "the last epoch kept (no epoch picked on validation data); distilled students use CE + the method's "
        f"term(s). Seeds {args.seeds}: the seed sets the student's initial weights and batch order, the same for "
        "every row of a seed (paired); the data split and the teacher are fixed (seed 0). "
        + ("Rows were read from the per-seed files of the training runs named in the command." if args.report_only
           else f"Wall time {time.perf_counter() - start:.0f} s (rows trained by an earlier run are read from its "
                "per-seed files)."),
        *parts,
    ])
    print(body)
    if not (args.quick or args.print_only):
        write_section("methods", body, report_command("methods.py", sys.argv[1:], args.seeds, args.report_only,
                                                      processes=2))


if __name__ == "__main__":
    main()
