"""Distillation on real images: every method tuned with the same budget, then paired over seeds on Fashion-MNIST.

    OMP_NUM_THREADS=2 python bench/fashion_mnist.py                 # writes the "fashion_mnist" section
    OMP_NUM_THREADS=2 python bench/fashion_mnist.py --quick         # smoke test: tiny slices, nothing written

Protocol (nothing here reads the test split before the final evaluation):
1. The teacher (a 3-block CNN) is trained once on the labelled training split, with random crops and flips, and
   saved (reused by later runs with the same settings).
2. Every method gets the same tuning budget: `kdkit tune` with `--trials` trials on a `--tune-size` subset of the
   training split, `--tune-epochs` epochs, scored by validation accuracy. The search spaces are listed below.
3. With the best values, every method trains the same student for `--epochs` epochs on the whole training split,
   once per seed. Rows are paired: within a seed every row starts from the same initial weights and sees the same
   batch order (and the same augmentation draws where a row augments). The student ends at its last epoch (no
   epoch is picked on validation data).
4. Test metrics; per-seed paired differences (method - student alone) with their standard error; gap closed =
   (method - alone) / (teacher - alone).

The data split (the validation carve-out) is fixed by data seed 0; the seed varies the student's initialisation,
batch order and augmentation draws.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import ConcatDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _protocol import (  # noqa: E402
    ALPHA_RANGE,
    T_RANGE,
    evaluate,
    log_range,
    report_command,
    run_rows,
    slug,
    table,
    tune_quietly,
)
from _results import write_section  # noqa: E402

from kdkit.data import Indexed, build_data, make_loader  # noqa: E402
from kdkit.data.boundary import boundary_samples  # noqa: E402
from kdkit.data.loaders import EVAL_BATCH_SIZE  # noqa: E402
from kdkit.deploy.export import median_ms  # noqa: E402
from kdkit.families.classification.config import parse_config  # noqa: E402
from kdkit.io.checkpoint import load_weights, save_weights  # noqa: E402
from kdkit.models import build_model  # noqa: E402
from kdkit.schemes import OfflineDistillation, Supervised  # noqa: E402
from kdkit.terms import build_terms  # noqa: E402
from kdkit.trainer.loop import fit, predict, seed_everything  # noqa: E402
from kdkit.trainer.settings import TrainSettings  # noqa: E402
from kdkit.tune.space import set_path  # noqa: E402

TEACHER = {"name": "cnn2d", "params": {"width": 32, "depth": 3}}
STUDENT = {"name": "cnn2d", "params": {"width": 3, "depth": 2}}
TEACHER_AUGMENT = [{"name": "crop", "padding": 2}, {"name": "flip"}]
# function matching (Beyer et al. 2022): one aggressive view per sample, shown to teacher and student alike
FM_AUGMENT = [{"name": "crop", "padding": 2}, {"name": "flip"}, {"name": "mixup", "alpha": 0.4}]
CE = {"name": "ce"}
BATCH = 256  # students (the teacher trains with 128)
HINT = {"student": "features.1", "teacher": "features.1"}  # 7x7 maps in both models
ATTENTION = HINT  # 7x7 maps: cached per sample, larger maps would need gigabytes
EMBEDDING = {"student": "features", "teacher": "features"}  # the last feature maps, flattened by the losses


@dataclass
class Method:
    """A distillation recipe: its loss terms, options of the distill stage, and its tuning space (dotted paths)."""

    losses: list[dict[str, Any]]
    space: dict[str, dict[str, Any]]
    augment: list[dict[str, Any]] = field(default_factory=list)
    boundary: dict[str, Any] | None = None
    stop_fraction: float | None = None  # early-stopped KD: the KD term acts in this share of the epochs


METHODS: dict[str, Method] = {
    "KD": Method([{"name": "kd", "T": 4.0, "alpha": 0.1}],
                 {"distill.losses.0.T": T_RANGE, "distill.losses.0.alpha": ALPHA_RANGE}),
    "DKD": Method([CE, {"name": "dkd", "alpha": 1.0, "beta": 8.0, "T": 4.0, "warmup_epochs": 1}],
                  {"distill.losses.1.beta": log_range(0.5, 16.0), "distill.losses.1.T": T_RANGE}),
    "DIST": Method([CE, {"name": "dist", "beta": 1.0, "gamma": 1.0, "T": 4.0}],
                   {"distill.losses.1.weight": log_range(0.1, 10.0), "distill.losses.1.T": T_RANGE}),
    "FitNets": Method([CE, {"name": "fitnet", "weight": 1.0, **HINT}],
                      {"distill.losses.1.weight": log_range(0.01, 100.0)}),
    "AT": Method([CE, {"name": "at", "weight": 100.0, **ATTENTION}],
                 {"distill.losses.1.weight": log_range(1.0, 3000.0)}),
    # RKD's angle term costs O(batch^3): at batch 256 about 2 s per step here, so the distance term alone
    "RKD (distance)": Method([CE, {"name": "rkd_distance", "weight": 25.0, **EMBEDDING}],
                             {"distill.losses.1.weight": log_range(0.1, 100.0)}),
    "SP": Method([CE, {"name": "sp", "weight": 1000.0, **EMBEDDING}],
                 {"distill.losses.1.weight": log_range(1.0, 10_000.0)}),
    "PKT": Method([CE, {"name": "pkt", "weight": 10.0, **EMBEDDING}],
                  {"distill.losses.1.weight": log_range(0.1, 1000.0)}),
    "KD, early-stopped": Method(
        [{"name": "kd", "T": 4.0, "alpha": 0.0}, {"name": "ce", "weight": 0.5}],
        {"distill.losses.0.T": T_RANGE, "distill.losses.1.weight": log_range(0.05, 5.0)}, stop_fraction=0.5),
    "KD + boundary samples": Method(
        [{"name": "kd", "T": 4.0, "alpha": 0.1}],
        {"distill.losses.0.T": T_RANGE, "distill.losses.0.alpha": ALPHA_RANGE},
        boundary={"fraction": 0.2}),
    "KD + function matching": Method(
        [{"name": "kd", "T": 1.0, "alpha": 0.0}],
        {"distill.losses.0.T": T_RANGE, "distill.train.augment.2.alpha": log_range(0.1, 1.0)},
        augment=FM_AUGMENT),
}
# patient schedules (Beyer et al.): a row trained twice as long with the values tuned for its 1x row. Function
# matching itself costs a live teacher per step and, at 1x, lost to the student alone here (see RESULTS.md), so
# the patient row is plain KD with a cached teacher
PATIENT = {"KD, 2x epochs": "KD"}


def data_config(train_size: int | None, test_size: int | None) -> dict[str, Any]:
    return {"name": "fashion_mnist", "val_fraction": 0.05, "train_size": train_size, "test_size": test_size}


def train_teacher(args: argparse.Namespace, bundle, out: Path) -> tuple[torch.nn.Module, Path]:
    """The teacher, trained once per setting and saved; a later run with the same settings loads it."""
    settings = TrainSettings(epochs=args.teacher_epochs, batch_size=128, lr=3e-3, seed=0, keep="last",
                             augment=TEACHER_AUGMENT, progress=False)
    key = hashlib.sha256(json.dumps([TEACHER, settings.model_dump(), args.train_size]).encode()).hexdigest()[:12]
    path = out / f"teacher-{key}.safetensors"
    seed_everything(0)
    teacher = build_model(TEACHER["name"], bundle.input_shape, bundle.num_classes, **TEACHER["params"])
    if path.exists():
        load_weights(teacher, path)
        return teacher.eval(), path
    start = time.perf_counter()
    fit(Supervised(teacher), make_loader(bundle.train, 128, shuffle=True, seed=0),
        make_loader(bundle.val, EVAL_BATCH_SIZE, shuffle=False), settings, name="teacher")
    print(f"teacher trained in {time.perf_counter() - start:.0f} s", flush=True)
    save_weights(teacher, path)
    return teacher.eval(), path


def method_config(method: Method, args: argparse.Namespace, epochs: int, train_size: int | None,
                  teacher_path: Path, out: Path, trials: int) -> dict[str, Any]:
    losses = copy.deepcopy(method.losses)
    if method.stop_fraction is not None:
        losses[0]["until_epoch"] = max(1, round(method.stop_fraction * epochs))
    distill: dict[str, Any] = {
        "losses": losses, "use_transfer": False, "cache_teacher": not method.augment,
        "train": {"epochs": epochs, "augment": copy.deepcopy(method.augment)},
    }
    if method.boundary is not None:
        size = train_size or 57_000
        distill["boundary"] = {"num_samples": max(1, round(method.boundary["fraction"] * size))}
    return {
        "seed": 0, "output_dir": str(out), "data": data_config(train_size, None),
        "train": {"epochs": epochs, "batch_size": BATCH, "lr": 3e-3, "keep": "last", "progress": False},
        "teacher": {**TEACHER, "checkpoint": str(teacher_path)}, "student": STUDENT, "distill": distill,
        "tune": {"trials": trials, "metric": "accuracy", "space": method.space},
    }


def tuned_values(name: str, method: Method, args: argparse.Namespace, teacher_path: Path, out: Path) -> dict:
    """kdkit tune on the validation split with this method's space; the same number of trials for every method."""
    raw = method_config(method, args, args.tune_epochs, args.tune_size, teacher_path, out / "tune" / slug(name),
                        args.trials)
    return tune_quietly(name, raw)


def student(bundle, seed: int) -> torch.nn.Module:
    seed_everything(10_000 + seed)  # every row of a seed starts from these weights
    return build_model(STUDENT["name"], bundle.input_shape, bundle.num_classes, **STUDENT["params"])


def row_names(methods: list[str]) -> list[str]:
    patient = [name for name, base in PATIENT.items() if base in methods]
    return ["student alone", "student alone + FM augmentation", *methods, "student alone, 2x epochs", *patient]


def training_order(methods: list[str]) -> list[str]:
    """The rows in the order they train: the references and the recipes the brief cares most about first, so an
    interrupted run has the most telling rows."""
    first = ["student alone", "KD + function matching", "student alone, 2x epochs", *PATIENT,
             "student alone + FM augmentation", "KD"]
    rows = row_names(methods)
    return [r for r in first if r in rows] + [r for r in rows if r not in first]


def reference(row: str) -> str:
    """The student-alone row a method is paired with: the one trained for as many epochs."""
    return "student alone, 2x epochs" if row.endswith("2x epochs") else "student alone"


def compared(row: str) -> bool:
    """Rows reported as paired differences: every method, and the augmented student alone."""
    return row != "teacher" and not row.startswith("student alone") or row == "student alone + FM augmentation"


def train_row(row: str, seed: int, args, bundle, teacher, tuned: dict[str, dict], teacher_path: Path, out: Path,
              val) -> tuple[torch.nn.Module, list[float]]:
    """The row's student, trained, and its validation accuracy after every epoch."""
    model = student(bundle, seed)
    epochs = args.epochs * (2 if row.endswith("2x epochs") else 1)
    if row.startswith("student alone"):
        augment = FM_AUGMENT if "augmentation" in row else []
        settings = TrainSettings(epochs=epochs, batch_size=BATCH, lr=3e-3, seed=seed, keep="last", progress=False,
                                 augment=augment)
        result = fit(Supervised(model), make_loader(bundle.train, BATCH, shuffle=True, seed=seed), val, settings,
                     name=row)
        return model, [r["val_accuracy"] for r in result.history]
    method_name = PATIENT.get(row, row)
    raw = method_config(METHODS[method_name], args, epochs, args.train_size, teacher_path, out, 1)
    for path, value in tuned[method_name].items():
        set_path(raw, path, value)
    cfg = parse_config(raw)
    settings = cfg.settings("distill").model_copy(update={"seed": seed})
    distill_set = bundle.train
    if cfg.distill.boundary is not None:
        distill_set = ConcatDataset([distill_set, boundary_samples(teacher, bundle.train,
                                                                   cfg.distill.boundary.num_samples, seed=seed)])
    if cfg.distill.cache_teacher:
        distill_set = Indexed(distill_set)
    example = torch.stack([bundle.train[i][0] for i in range(2)])
    scheme = OfflineDistillation(model, teacher, build_terms(cfg.distill.losses),
                                 cache_size=len(distill_set) if cfg.distill.cache_teacher else None, example=example)
    result = fit(scheme, make_loader(distill_set, BATCH, shuffle=True, seed=seed), val, settings, name=row)
    scheme.close()
    return model, [r["val_accuracy"] for r in result.history]


def run_seed(seed: int, args, bundle, teacher, tuned: dict[str, dict], teacher_path: Path, out: Path) -> dict:
    """Every row of one seed; finished rows are kept in out/seed<N>.json, so a rerun only trains what is missing."""
    test = make_loader(bundle.test, EVAL_BATCH_SIZE, shuffle=False)
    val = make_loader(bundle.val, EVAL_BATCH_SIZE, shuffle=False)
    teacher_logits, _ = predict(teacher, test, torch.device("cpu"))

    def train(row: str) -> dict[str, Any]:
        model, curve = train_row(row, seed, args, bundle, teacher, tuned, teacher_path, out, val)
        return {**evaluate(model, test, teacher_logits), "val_curve": curve}

    return run_rows(out / f"seed{seed}.json", seed, training_order(args.methods), train,
                    {"teacher": evaluate(teacher, test, None)}, args.report_only)


def latency_ratio(teacher: torch.nn.Module, student_model: torch.nn.Module, rounds: int = 7) -> tuple[float, float]:
    """Median batch-64 latency (ms) of teacher and student on one thread, timed in alternating rounds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    x = torch.rand(64, 1, 28, 28)
    times: dict[str, list[float]] = {"teacher": [], "student": []}
    with torch.no_grad():
        for _ in range(rounds):
            for role, model in (("teacher", teacher.eval()), ("student", student_model.eval())):
                times[role].append(median_ms(lambda m=model: m(x), repeats=10))
    torch.set_num_threads(threads)
    return statistics.median(times["teacher"]), statistics.median(times["student"])


def targets(runs: list[dict], methods: list[str]) -> str:
    """The benchmark's targets, judged on test, for the recipe with the best mean VALIDATION accuracy (1x rows)."""
    complete = [m for m in methods if all(m in r for r in runs)]
    best = max(complete, key=lambda m: statistics.mean(r[m]["val_curve"][-1] for r in runs))
    alone = [r["student alone"]["accuracy"] for r in runs]
    spread = statistics.stdev(alone) if len(alone) > 1 else 0.0
    gain = statistics.mean(r[best]["accuracy"] for r in runs) - statistics.mean(alone)
    closed = statistics.mean((r[best]["accuracy"] - r["student alone"]["accuracy"])
                             / (r["teacher"]["accuracy"] - r["student alone"]["accuracy"]) for r in runs)
    kd = statistics.mean(r["KD"]["accuracy"] for r in runs) - statistics.mean(alone) if "KD" in complete else None
    verdict = lambda ok: "met" if ok else "**missed**"  # noqa: E731
    return "\n".join([
        f"Targets (the recipe with the best mean validation accuracy is **{best}**):",
        f"- beats the student alone by more than 3x the seed std ({100 * gain:+.2f} points vs 3 x "
        f"{100 * spread:.2f}): {verdict(gain > 3 * spread)}",
        f"- closes at least 50% of the teacher-student gap ({closed:.2f}): {verdict(closed >= 0.5)}",
        *([f"- tuned plain KD beats the student alone on the mean ({100 * kd:+.2f} points): {verdict(kd > 0)}"]
          if kd is not None else []),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--teacher-epochs", type=int, default=12)
    parser.add_argument("--train-size", type=int, default=None, help="labelled training images (default: all)")
    parser.add_argument("--test-size", type=int, default=None)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--tune-size", type=int, default=10_000)
    parser.add_argument("--tune-epochs", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--out", default="runs/bench_fashion_mnist")
    parser.add_argument("--quick", action="store_true", help="tiny slices, 1 seed, print only")
    parser.add_argument("--print-only", action="store_true", help="do not write bench/RESULTS.md")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: the table from the rows earlier runs saved in --out (seed processes run "
                        "apart, e.g. one per core, then one --report-only run writes the section)")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.epochs, args.teacher_epochs, args.trials = [0], 1, 1, 2
        args.train_size, args.test_size, args.tune_size, args.tune_epochs = 600, 300, 300, 1
        args.out = str(Path(args.out) / "quick")  # its own folder: its rows must never stand in for a full run's
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    bundle = build_data(data_config(args.train_size, args.test_size), 0)
    teacher, teacher_path = train_teacher(args, bundle, out)
    # tuned values are kept, so a rerun (e.g. with more seeds) reuses the search instead of repeating it
    tuned_file = out / f"tuned-{args.trials}x{args.tune_size}x{args.tune_epochs}.json"
    tuned = json.loads(tuned_file.read_text()) if tuned_file.exists() else {}
    for name in args.methods:
        if name not in tuned:
            tuned[name] = tuned_values(name, METHODS[name], args, teacher_path, out)
            tuned_file.write_text(json.dumps(tuned, indent=1))
    tune_seconds = time.perf_counter() - start
    runs = [run_seed(seed, args, bundle, teacher, tuned, teacher_path, out) for seed in args.seeds]
    rows = row_names(args.methods)
    small = student(bundle, 0)
    n_params = [sum(p.numel() for p in m.parameters()) for m in (teacher, small)]
    t_ms, s_ms = latency_ratio(teacher, small)
    curves = [row for row in rows if row.endswith("2x epochs")] + ["KD + function matching"]
    curve_lines = ["| epoch | " + " | ".join(curves) + " |", "|---" * (len(curves) + 1) + "|"]
    for epoch in range(0, 2 * args.epochs, max(1, args.epochs // 5)):
        cells = [f"{100 * statistics.mean(r[c]['val_curve'][epoch] for r in runs if c in r):.2f}"
                 if epoch < len(runs[0][c]["val_curve"]) else "" for c in curves if c in runs[0]]
        curve_lines.append(f"| {epoch + 1} | " + " | ".join(cells) + " |")
    body = "\n".join([
        f"Fashion-MNIST ({len(bundle.train):,} labelled training images, {len(bundle.val):,} validation, "
        f"{len(bundle.test):,} test). Teacher `{TEACHER['name']}` {TEACHER['params']} ({n_params[0]:,} parameters, "
        f"{args.teacher_epochs} epochs with {TEACHER_AUGMENT}, batch 128); student `{STUDENT['name']}` "
        f"{STUDENT['params']} ({n_params[1]:,} parameters, {n_params[0] / n_params[1]:.0f}x fewer). Latency at "
        f"batch 64, one thread, median of 7 alternating rounds: teacher {t_ms:.2f} ms, student {s_ms:.2f} ms "
        f"(**{t_ms / s_ms:.1f}x faster**).",
        "",
        f"Every method tuned by `kdkit tune` with {args.trials} trials (TPE, median pruning) on "
        f"{args.tune_size:,} training images for {args.tune_epochs} epochs, scored by validation accuracy; then "
        f"{args.epochs} epochs on the whole training split (2x rows: {2 * args.epochs}, with the values tuned for "
        f"their 1x row), AdamW lr 3e-3, cosine, batch {BATCH}, the last epoch kept (no epoch picked on validation "
        f"data); seeds {args.seeds}; rows paired within a seed (same initial weights, batch order and augmentation "
        f"draws). Function matching (FM): {FM_AUGMENT} on every batch, one view for teacher and student, KD with "
        "no label term; the row 'student alone + FM augmentation' trains on the same views with mixed labels. "
        + ("Rows were read from the per-seed files of the training runs named in the command." if args.report_only else
         f"Tuning took {tune_seconds:.0f} s, the whole run {time.perf_counter() - start:.0f} s (rows already trained "
         "by an earlier run are read from its per-seed files)."),
        "",
        table(runs, rows, reference, compared,
              note=lambda ref: " (vs 2x alone)" if ref != "student alone" else ""),
        "",
        targets(runs, args.methods),
        "",
        "Validation accuracy (%) per epoch, mean over seeds (the patient schedule's curves):",
        "",
        *curve_lines,
        "",
        "Tuned values: " + "; ".join(f"{m}: {json.dumps(v)}" for m, v in tuned.items() if m in args.methods),
    ])
    print(body)
    if not (args.quick or args.print_only):
        # with --report-only, how the seeds were trained: one process each, side by side
        command = report_command("fashion_mnist.py", sys.argv[1:], args.seeds, args.report_only)
        write_section("fashion_mnist", body, command)


if __name__ == "__main__":
    main()
