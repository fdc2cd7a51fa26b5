"""Benchmark: privileged-column distillation on data shipped with scikit-learn (nothing is downloaded).

- breast cancer (569 rows, binary): the teacher sees all 30 columns, the student only the 10 "mean ..." ones;
- digits as a table (1797 rows, 10 classes): the teacher sees all 64 pixels, the student a symmetric 4x4 grid
  of 16 pixels (rows and columns 1, 3, 4, 6).

Outer loop: repeated stratified K-fold (default 5 repeats x 2 folds = 10 splits). On each outer training half
kdkit fits the teacher out-of-fold + distilled student (alpha=0), a second distilled student with alpha=0.5 on
the same teacher probabilities, and the student alone (hard labels, same model and folds); all are scored on the
outer held-out half (teacher = mean of its fold models; labels by
argmax, no threshold tuning). Teacher and student are the same library, with kdkit's default parameters.

    python bench/tabular.py                      # writes the "tabular" section of bench/RESULTS.md
    python bench/tabular.py --repeats 1 --no-write   # quick look
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import RepeatedStratifiedKFold

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _results import write_section  # noqa: E402

from kdkit.families.tabular import DistilledClassifier, scores  # noqa: E402

METRICS = ("log_loss", "roc_auc", "macro_f1", "accuracy")
MODELS = ("teacher", "student alone", "distilled student", "distilled student, alpha=0.5")
GRID = (1, 3, 4, 6)


def breast_cancer() -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    data = load_breast_cancer(as_frame=True)
    return data.data, data.target.to_numpy(), [c for c in data.data.columns if c.startswith("mean ")]


def digits() -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    data = load_digits(as_frame=True)
    return data.data, data.target.to_numpy(), [f"pixel_{r}_{c}" for r in GRID for c in GRID]


DATASETS = {"breast_cancer": breast_cancer, "digits": digits}


def run_split(X: pd.DataFrame, y: np.ndarray, cols: list[str], family: str, train: np.ndarray,
              test: np.ndarray, seed: int, inner: int) -> dict[str, dict[str, float]]:
    Xtr, Xte = X.iloc[train], X.iloc[test]
    common = dict(student=family, student_columns=cols, n_splits=inner, random_state=seed)
    distilled = DistilledClassifier(teacher=family, alpha=0.0, **common).fit(Xtr, y[train])
    alone = DistilledClassifier(alpha=1.0, **common).fit(Xtr, y[train])
    mixed = DistilledClassifier(alpha=0.5, **common).fit(Xtr, y[train], teacher_proba=distilled.teacher_oof_)
    probs = {
        "teacher": distilled.teacher_predict_proba(Xte),
        "student alone": alone.predict_proba(Xte[cols]),
        "distilled student": distilled.predict_proba(Xte[cols]),
        "distilled student, alpha=0.5": mixed.predict_proba(Xte[cols]),
    }
    return {name: scores(y[test], p) for name, p in probs.items()}


def summarize(records: list[dict]) -> str:
    frame = pd.DataFrame(records)
    lines = []
    for dataset, sub in frame.groupby("dataset", sort=False):
        n_splits = sub["split"].nunique()
        lines += [f"### {dataset} ({n_splits} outer splits, mean +- std on the held-out halves)", "",
                  "| student = teacher library | model | log loss | ROC AUC | macro F1 | accuracy |",
                  "|---|---|---:|---:|---:|---:|"]
        for family, fam in sub.groupby("family", sort=False):
            for model in MODELS:
                rows = fam[fam["model"] == model]
                cells = [f"{rows[m].mean():.4f} +- {rows[m].std(ddof=1):.4f}" for m in METRICS]
                lines.append(f"| {family} | {model} | " + " | ".join(cells) + " |")
        lines.append("")
        for family, fam in sub.groupby("family", sort=False):
            alone = fam[fam["model"] == "student alone"].set_index("split")
            for model in MODELS[2:]:
                dist = fam[fam["model"] == model].set_index("split")
                wins = {m: int((dist[m] < alone[m]).sum() if m == "log_loss" else (dist[m] > alone[m]).sum())
                        for m in METRICS}
                delta = dist["log_loss"].mean() - alone["log_loss"].mean()
                verdict = "beats" if delta < 0 else "does NOT beat"
                lines.append(
                    f"- {family}, {model}: {verdict} the student alone on mean log loss ({delta:+.4f}); better "
                    f"on log loss in {wins['log_loss']}/{n_splits} splits, ROC AUC {wins['roc_auc']}/{n_splits}, "
                    f"macro F1 {wins['macro_f1']}/{n_splits}, accuracy {wins['accuracy']}/{n_splits}."
                )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--folds", type=int, default=2, help="outer folds per repeat")
    parser.add_argument("--inner-splits", type=int, default=5, help="kdkit n_splits (teacher OOF and student)")
    parser.add_argument("--families", default="catboost,lightgbm")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--no-write", action="store_true", help="print only, leave bench/RESULTS.md alone")
    args = parser.parse_args()
    records, start = [], time.time()
    for name in args.datasets.split(","):
        X, y, cols = DATASETS[name]()
        outer = RepeatedStratifiedKFold(n_splits=args.folds, n_repeats=args.repeats, random_state=0)
        for family in args.families.split(","):
            for split, (train, test) in enumerate(outer.split(X, y)):
                for model, vals in run_split(X, y, cols, family, train, test, split, args.inner_splits).items():
                    records.append({"dataset": name, "family": family, "split": split, "model": model, **vals})
                print(f"[{time.time() - start:6.0f}s] {name} {family} split {split + 1}", flush=True)
    body = summarize(records)
    print(body)
    raw = Path("runs") / "bench-tabular.json"
    raw.parent.mkdir(exist_ok=True)
    raw.write_text(json.dumps(records, indent=1))
    if not args.no_write:
        intro = (
            "Teacher: all columns; student: breast cancer's 10 `mean ...` columns, digits' 16-pixel grid "
            f"(rows/cols 1, 3, 4, 6). Outer repeated stratified {args.folds}-fold x {args.repeats}; inside, "
            f"kdkit's {args.inner_splits}-fold teacher out-of-fold probabilities, distilled students with alpha=0 "
            "and alpha=0.5 (same teacher probabilities), student alone with alpha=1 (same model, folds and seed). "
            "Teacher and student use the same library with kdkit's default parameters; binary students learn "
            "with CatBoost `CrossEntropy` / LightGBM `cross_entropy`, multiclass ones by weighted row expansion "
            "(`expand`). Scores on the outer held-out half, labels by argmax. "
            f"Wall time {time.time() - start:.0f} s.\n\n"
        )
        cmd = "python bench/tabular.py" + "".join(f" {a}" for a in sys.argv[1:])
        write_section("tabular", intro + body, cmd)


if __name__ == "__main__":
    main()
