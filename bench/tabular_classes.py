"""Benchmark: what the tabular LightGBM student costs with many classes, against a hand-written recipe.

Data: a generated 26-class table shaped like UCI letter recognition (16 numeric columns, 26 classes; scikit-learn's
make_classification, nothing downloaded). The teacher (LightGBM) sees all 16 columns, the student (LightGBM) the
first 8. Per seed, a stratified 2/3 - 1/3 split; on the 2/3, kdkit's 5-fold teacher out-of-fold probabilities,
then four students on them, all with kdkit's LightGBM parameters and the same 5 folds' seeds:

- hand recipe: what one writes without kdkit: KFold(5), and per fold ``lightgbm.train`` with a hand-written softmax
  cross-entropy objective (gradient p - q, Hessian p (1 - p)) on the teacher's probabilities;
- kdkit soft (the default now): ``DistilledClassifier(student="lightgbm")``, kdkit.families.tabular.lgbm_soft;
- kdkit expand (the default before): each row copied once per class, weighted by the teacher's probability;
- kdkit soft with alpha = 0.5: targets half the teacher's probabilities, half the one-hot label;
- student alone: LightGBM on the labels (alpha = 1).

CPU time (process time, one thread) of each student stage, and of the whole fit (teacher + student) where the
teacher stage is the same for all. Targets, stated before measuring: kdkit's student costs at most 1.5x the hand
recipe's CPU at 26 classes (student stage and whole fit), and its test accuracy is not below the student alone's
beyond noise (the paired 95% t-interval over seeds of distilled minus alone reaches 0 or above).

    python bench/tabular_classes.py                 # writes the "tabular_classes" section of bench/RESULTS.md
    python bench/tabular_classes.py --seeds 0 --rows 1000 --no-write   # a quick look
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.datasets import make_classification
from sklearn.model_selection import KFold, train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _results import command_line, write_section  # noqa: E402

from kdkit.families.tabular import DistilledClassifier, scores  # noqa: E402
from kdkit.families.tabular.models import _LGB  # noqa: E402 - kdkit's LightGBM parameters, for the hand recipe too

STUDENTS = ("hand recipe", "kdkit soft", "kdkit expand", "kdkit soft, alpha=0.5", "student alone")


def table(rows: int, classes: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    X, y = make_classification(rows, 16, n_informative=12, n_redundant=2, n_classes=classes,
                               n_clusters_per_class=1, class_sep=1.5, random_state=seed)
    return pd.DataFrame(X, columns=[f"x{i}" for i in range(16)]), y


def hand_recipe(X: np.ndarray, targets: np.ndarray, test: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold and test probabilities of 5 LightGBM boosters on soft targets, written with lightgbm alone."""
    import lightgbm

    k = targets.shape[1]
    oof, on_test = np.zeros_like(targets), np.zeros((len(test), k))
    params = {key: v for key, v in _LGB.items() if key != "n_estimators"}
    for fold, (train, val) in enumerate(KFold(5, shuffle=True, random_state=seed).split(X)):
        q = targets[train]

        def objective(scores: np.ndarray, data: object, q: np.ndarray = q) -> tuple[np.ndarray, np.ndarray]:
            z = scores.reshape(q.shape)
            p = np.exp(z - z.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            return p - q, p * (1 - p)

        booster = lightgbm.train({**params, "objective": objective, "num_class": k, "seed": seed + fold},
                                 lightgbm.Dataset(X[train], label=q.argmax(1)), num_boost_round=_LGB["n_estimators"])

        def proba(rows: np.ndarray, booster: lightgbm.Booster = booster) -> np.ndarray:
            z = booster.predict(rows, raw_score=True)
            e = np.exp(z - z.max(1, keepdims=True))
            return e / e.sum(1, keepdims=True)

        oof[val] = proba(X[val])
        on_test += proba(test) / 5
    return oof, on_test


def cpu(fn):  # noqa: ANN001, ANN201 - (seconds of process time, result)
    start = time.process_time()
    result = fn()
    return time.process_time() - start, result


def run_seed(rows: int, classes: int, seed: int) -> dict[str, dict[str, float]]:
    X, y = table(rows, classes, seed)
    cols = [f"x{i}" for i in range(8)]
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=1 / 3, stratify=y, random_state=seed)
    common = dict(teacher="lightgbm", student="lightgbm", student_columns=cols, random_state=seed)
    whole, full = cpu(lambda: DistilledClassifier(**common).fit(Xtr, ytr))
    teacher = full.teacher_oof_
    out: dict[str, dict[str, float]] = {"teacher": scores(yte, full.teacher_predict_proba(Xte))}
    fits = {
        "kdkit soft": lambda: DistilledClassifier(**common).fit(Xtr, ytr, teacher_proba=teacher),
        "kdkit expand": lambda: DistilledClassifier(**common, student_mode="expand").fit(Xtr, ytr,
                                                                                        teacher_proba=teacher),
        "kdkit soft, alpha=0.5": lambda: DistilledClassifier(**common, alpha=0.5).fit(Xtr, ytr, teacher_proba=teacher),
        "student alone": lambda: DistilledClassifier(**common, alpha=1.0).fit(Xtr, ytr),
    }
    seconds = {}
    for name, fit in fits.items():
        seconds[name], model = cpu(fit)
        out[name] = scores(yte, model.predict_proba(Xte[cols]))
    seconds["hand recipe"], (_, on_test) = cpu(lambda: hand_recipe(Xtr[cols].to_numpy(), teacher,
                                                                   Xte[cols].to_numpy(), seed))
    out["hand recipe"] = scores(yte, on_test)
    teacher_stage = whole - seconds["kdkit soft"]  # the fit above, less its (identical) student stage
    for name in STUDENTS:
        out[name]["student_cpu_s"] = seconds[name]
        out[name]["whole_cpu_s"] = seconds[name] + (0.0 if name == "student alone" else teacher_stage)
    return out


def summarize(records: list[dict[str, dict[str, float]]], classes: int) -> str:
    lines = ["| model | accuracy | log loss | student stage CPU (s) | x hand | whole fit CPU (s) | x hand |",
             "|---|---:|---:|---:|---:|---:|---:|"]

    def ms(values: list[float], fmt: str) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{format(statistics.mean(values), fmt)} ± {format(sd, fmt)}"

    for name in ("teacher", *STUDENTS):
        acc = ms([r[name]["accuracy"] for r in records], ".4f")
        loss = ms([r[name]["log_loss"] for r in records], ".4f")
        if name == "teacher":
            lines.append(f"| teacher (16 columns) | {acc} | {loss} | - | - | - | - |")
            continue
        cells = []
        for key in ("student_cpu_s", "whole_cpu_s"):
            ratio = [r[name][key] / r["hand recipe"][key] for r in records]
            cells += [ms([r[name][key] for r in records], ".1f"), ms(ratio, ".2f")]
        lines.append(f"| {name} | {acc} | {loss} | " + " | ".join(cells) + " |")
    diffs = [r["kdkit soft"]["accuracy"] - r["student alone"]["accuracy"] for r in records]
    mean = statistics.mean(diffs)
    if len(diffs) > 1:
        half = stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / np.sqrt(len(diffs))
        interval = f"95% t-interval {100 * (mean - half):+.2f} to {100 * (mean + half):+.2f}"
        below = mean + half < 0
    else:
        interval, below = "one seed: no interval", mean < 0
    soft = max(r["kdkit soft"][k] / r["hand recipe"][k] for r in records for k in ("student_cpu_s", "whole_cpu_s"))
    lines += ["", f"- {classes} classes. Target 1, kdkit's student at most 1.5x the hand recipe's CPU: "
              f"{'hit' if soft <= 1.5 else 'MISSED'} (largest ratio over seeds and stages {soft:.2f}x).",
              f"- Target 2, accuracy not below the student alone beyond noise: {'MISSED' if below else 'hit'} "
              f"(kdkit soft minus student alone, paired by seed: {100 * mean:+.2f} points, {interval}; per seed "
              f"{', '.join(f'{100 * d:+.2f}' for d in diffs)})."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--classes", type=int, default=26)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--no-write", action="store_true", help="print only, leave bench/RESULTS.md alone")
    args = parser.parse_args()
    start, records = time.time(), []
    for seed in args.seeds:
        records.append(run_seed(args.rows, args.classes, seed))
        print(f"[{time.time() - start:6.0f}s] seed {seed}: " + ", ".join(
            f"{n} {records[-1][n]['accuracy']:.4f} / {records[-1][n]['student_cpu_s']:.1f} s" for n in STUDENTS),
            flush=True)
    body = summarize(records, args.classes)
    print(body)
    if not args.no_write:
        intro = (f"{args.rows} rows ({args.rows * 2 // 3} to fit), {args.classes} classes, seeds "
                 f"{' '.join(map(str, args.seeds))}; accuracy and log loss on the held-out third (mean ± sd over "
                 f"seeds); CPU is process time on one thread. Wall time {time.time() - start:.0f} s.\n\n")
        write_section("tabular_classes", intro + body, command_line("tabular_classes.py", parser, args))


if __name__ == "__main__":
    main()
