"""Compare distillation methods with the same teacher, student, data and epochs, over several seeds.

    OMP_NUM_THREADS=1 python bench/methods.py            # full run, writes the "methods" section of RESULTS.md
    OMP_NUM_THREADS=1 python bench/methods.py --quick    # smoke test: 1 seed, 2 epochs, nothing written

Per data set and seed the teacher is trained once and shared by every method; every student starts from the same
initial weights (seeded) and sees the same batches. Every distilled student is trained with cross-entropy plus the
method's term(s), with the weights the methods' papers (or the CRD benchmark of Tian et al. 2020) use, untuned
here: with other models and data these weights may be far from the best ones.
The teacher's outputs (logits and tapped features) are cached per sample, which is exact here: no augmentation.

Students are small CNNs on both data sets, so that the feature methods (FitNets, AT) compare maps with a spatial
axis; an MLP student would have no spatial map for AT to act on.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import mean_std, write_section  # noqa: E402

from kdkit import metrics  # noqa: E402
from kdkit.data import Indexed, load_builtin, make_loader  # noqa: E402
from kdkit.models import build_model  # noqa: E402
from kdkit.schemes import OfflineDistillation, Supervised  # noqa: E402
from kdkit.settings import TrainSettings  # noqa: E402
from kdkit.terms import build_terms  # noqa: E402
from kdkit.trainer import fit, predict, seed_everything  # noqa: E402


@dataclass(frozen=True)
class Setup:
    """Models of one data set and the module paths the feature terms tap."""

    teacher: tuple[str, dict[str, Any]]
    student: tuple[str, dict[str, Any]]
    hint: tuple[str, str]  # (student, teacher) paths for FitNets
    attention: tuple[str, str]  # for AT: the largest map with learned features (AT's value grows on small maps)
    relation: tuple[str, str]  # for SP
    embedding: tuple[str, str]  # penultimate features for RKD and PKT


SETUPS = {
    "mnist1d": Setup(
        teacher=("cnn1d", {"width": 64, "depth": 3, "kernel": 5}),
        student=("cnn1d", {"width": 8, "depth": 3, "kernel": 3}),
        hint=("features.1", "features.1"),
        attention=("features.1.2", "features.1.2"),  # block 2's ReLU, before pooling: length 40
        relation=("features.2", "features.2"),
        embedding=("features", "features"),
    ),
    "digits": Setup(
        teacher=("cnn2d", {"width": 32, "depth": 2}),
        student=("cnn2d", {"width": 4, "depth": 2}),
        hint=("features.0", "features.0"),
        attention=("features.0.2", "features.0.2"),  # block 1's ReLU, before pooling: 8x8
        relation=("features.1", "features.1"),
        embedding=("features", "features"),
    ),
}

CE = {"name": "ce", "weight": 1.0}


def _kd(setup: Setup, epochs: int) -> list[dict]:
    return [{"name": "ce", "weight": 0.1}, {"name": "kd", "weight": 0.9, "T": 4.0}]


def _pair(paths: tuple[str, str]) -> dict[str, str]:
    return {"student": paths[0], "teacher": paths[1]}


# method -> (setup, epochs) -> loss terms; None = trained alone on labels
METHODS: dict[str, Callable[[Setup, int], list[dict] | None]] = {
    "student alone": lambda s, e: None,
    "KD": _kd,
    # the paper warms DKD up over 20 of 240 epochs; the same fraction of this run's epochs
    "DKD": lambda s, e: [CE, {"name": "dkd", "alpha": 1.0, "beta": 8.0, "T": 4.0,
                              "warmup_epochs": max(1, round(e * 20 / 240))}],
    "DIST": lambda s, e: [CE, {"name": "dist", "beta": 1.0, "gamma": 1.0, "T": 4.0}],
    "FitNets": lambda s, e: [CE, {"name": "fitnet", "weight": 100.0, **_pair(s.hint)}],
    "AT": lambda s, e: [CE, {"name": "at", "weight": 1000.0, **_pair(s.attention)}],
    "RKD": lambda s, e: [CE, {"name": "rkd_distance", "weight": 25.0, **_pair(s.embedding)},
                         {"name": "rkd_angle", "weight": 50.0, **_pair(s.embedding)}],
    "SP": lambda s, e: [CE, {"name": "sp", "weight": 3000.0, **_pair(s.relation)}],
    # CRD's 30000 multiplies a mean over the N^2 pairs; kdkit's PKT sums over the N-1 partners: 30000 / batch
    "PKT": lambda s, e: [CE, {"name": "pkt", "weight": 30000.0 / 128, **_pair(s.embedding)}],
    "KD + AT": lambda s, e: [*_kd(s, e), {"name": "at", "weight": 1000.0, **_pair(s.attention)}],
}


def evaluate(model: torch.nn.Module, loader, teacher_logits: torch.Tensor | None) -> dict[str, float]:
    logits, labels = predict(model, loader, torch.device("cpu"))
    out = {"accuracy": metrics.accuracy(logits, labels)}
    if teacher_logits is not None:
        out["agreement"] = metrics.agreement(logits, teacher_logits)
    return out


def run_seed(data: str, seed: int, epochs: int, methods: list[str]) -> dict[str, dict[str, float]]:
    setup = SETUPS[data]
    bundle = load_builtin(data, seed=seed)
    settings = TrainSettings(epochs=epochs, batch_size=128, lr=3e-3, monitor="accuracy", seed=seed, device="cpu",
                             progress=False)
    val = make_loader(bundle.val, 512, shuffle=False)
    test = make_loader(bundle.test, 512, shuffle=False)

    seed_everything(seed)
    teacher = build_model(setup.teacher[0], bundle.input_shape, bundle.num_classes, **setup.teacher[1])
    fit(Supervised(teacher), make_loader(bundle.train, 128, shuffle=True, seed=seed), val, settings, name="teacher")
    teacher_logits, _ = predict(teacher, test, torch.device("cpu"))
    results = {"teacher": evaluate(teacher, test, None)}

    for method in methods:
        seed_everything(seed + 1)  # the same initial student for every method
        student = build_model(setup.student[0], bundle.input_shape, bundle.num_classes, **setup.student[1])
        specs = METHODS[method](setup, epochs)
        if specs is None:
            scheme = Supervised(student)
            train = make_loader(bundle.train, 128, shuffle=True, seed=seed)
        else:
            data_set = Indexed(bundle.train)
            train = make_loader(data_set, 128, shuffle=True, seed=seed)
            example = torch.stack([bundle.train[i][0] for i in range(2)])
            scheme = OfflineDistillation(student, teacher, build_terms(specs), cache_size=len(data_set),
                                         example=example)
        fit(scheme, train, val, settings, name=method)
        if specs is not None:
            scheme.close()
        results[method] = evaluate(student, test, teacher_logits)
    return results


def _stat(values: list[float]) -> str:
    if not values:
        return "-"
    return mean_std(values, ".1f", scale=100)


def table(runs: dict[str, list[dict[str, dict[str, float]]]], methods: list[str]) -> str:
    datasets = list(runs)
    head = "| method | " + " | ".join(f"{d} accuracy (%) | {d} agreement (%)" for d in datasets) + " |"
    lines = [head, "|---" * (1 + 2 * len(datasets)) + "|"]
    for method in ["teacher", *methods]:
        cells = []
        for d in datasets:
            acc = [r[method]["accuracy"] for r in runs[d]]
            agree = [r[method]["agreement"] for r in runs[d] if "agreement" in r[method]]
            cells += [_stat(acc), _stat(agree)]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(runs: dict[str, list[dict[str, dict[str, float]]]], methods: list[str]) -> str:
    """Which methods beat the student alone on mean test accuracy, and by more than one standard deviation."""
    out = []
    for d, seeds in runs.items():
        base = [r["student alone"]["accuracy"] for r in seeds]
        mean, spread = statistics.mean(base), statistics.stdev(base) if len(base) > 1 else 0.0
        above = [m for m in methods if m != "student alone"
                 and statistics.mean(r[m]["accuracy"] for r in seeds) > mean]
        clear = [m for m in above if statistics.mean(r[m]["accuracy"] for r in seeds) > mean + spread]
        out.append(f"- {d}: mean accuracy above the student alone: {', '.join(above) or 'none'}; "
                   f"by more than the student alone's std: {', '.join(clear) or 'none'}.")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--data", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 epochs, print only (no RESULTS.md)")
    parser.add_argument("--print-only", action="store_true", help="do not write bench/RESULTS.md")
    args = parser.parse_args()
    seeds, epochs = (1, 2) if args.quick else (args.seeds, args.epochs)
    methods = ["student alone", *[m for m in args.methods if m != "student alone"]]
    start, runs = time.perf_counter(), {}
    for data in args.data:
        runs[data] = []
        for seed in range(seeds):
            runs[data].append(run_seed(data, seed, epochs, methods))
            print(f"{data} seed {seed} done ({time.perf_counter() - start:.0f} s)", flush=True)
    body = table(runs, methods)
    s = SETUPS
    notes = (
        f"Test accuracy and agreement with the teacher's top-1 prediction, mean ± std over {seeds} seeds "
        f"(seed = validation split, teacher and student initialisation, batch order), {epochs} epochs each, "
        "AdamW lr 3e-3, cosine schedule, batch 128, best epoch by validation accuracy. Same teacher per seed for "
        "all methods; distilled students use CE + the method's term(s). Models: "
        + "; ".join(f"{d}: teacher {s[d].teacher[0]} {s[d].teacher[1]}, student {s[d].student[0]} {s[d].student[1]}"
                    for d in args.data)
        + f". Wall time {time.perf_counter() - start:.0f} s.\n\n{body}\n\n{verdict(runs, methods)}"
    )
    print(notes)
    if not (args.quick or args.print_only):
        write_section("methods", notes, "OMP_NUM_THREADS=1 python bench/methods.py")


if __name__ == "__main__":
    main()
