"""Does `kdkit tune` pay off? The demo's distillation with its default T/alpha/lr against the values a search finds
on the validation split, both measured on the untouched test split, per seed.

    OMP_NUM_THREADS=1 python bench/tune.py             # 3 seeds x 12 trials, writes the "tune" section
    OMP_NUM_THREADS=1 python bench/tune.py --quick     # smoke test: 1 seed, 2 trials, 1 epoch, nothing written
    OMP_NUM_THREADS=1 python bench/tune.py --no-prune  # every trial runs to the end: "tune (no pruning)"

The demo config with a smaller transfer set (4,000 generated samples) and 20 distillation epochs, so that a trial
takes seconds; the student alone and the teacher are the same in both runs of a seed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import mean_std, write_section  # noqa: E402

from kdkit.families.classification.config import parse_config  # noqa: E402
from kdkit.families.classification.demo import demo_config  # noqa: E402
from kdkit.families.classification.pipeline import run  # noqa: E402
from kdkit.families.classification.tune import tune  # noqa: E402
from kdkit.schemes.registry import DEFAULT_T_RANGE  # noqa: E402

SPACE = {
    "distill.losses.0.T": dict(DEFAULT_T_RANGE),
    "distill.losses.0.alpha": {"low": 0.0, "high": 0.9},
    "distill.train.lr": {"low": 3e-4, "high": 1e-2, "log": True},
}


def base_config(seed: int, out: Path, quick: bool, prune: bool = True) -> dict:
    raw = demo_config(seed=seed, output_dir=out, quick=quick).model_dump(mode="json")
    raw["data"]["transfer_size"] = 500 if quick else 4000
    raw["train"]["progress"] = False
    raw["distill"]["train"] = {"epochs": 1 if quick else 20, "batch_size": 256}
    raw["tune"] = {"trials": 12, "metric": "macro_f1", "prune": prune, "space": SPACE}
    return raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-prune", action="store_true", help="no median pruning: every trial runs to the end")
    parser.add_argument("--out", default="runs/bench_tune")
    args = parser.parse_args()
    seeds, trials = ([0], 2) if args.quick else (args.seeds, args.trials)
    quiet = Console(quiet=True)
    start = time.perf_counter()
    rows, picks = [], []
    for seed in seeds:
        raw = base_config(seed, Path(args.out) / f"seed{seed}" / "default", args.quick, prune=not args.no_prune)
        default = {r["role"]: r for r in run(parse_config(raw), console=quiet, quick_cost=True, overwrite=True).rows}
        tuned_raw = {**raw, "output_dir": str(Path(args.out) / f"seed{seed}" / "search")}
        best = tune(parse_config(tuned_raw), trials=trials, console=quiet)
        best_cfg = parse_config({**tuned_raw, **_apply(tuned_raw, best),
                                 "output_dir": str(Path(args.out) / f"seed{seed}" / "tuned")})
        tuned = {r["role"]: r for r in run(best_cfg, console=quiet, quick_cost=True, overwrite=True).rows}
        rows.append((default, tuned))
        picks.append(best)
        print(f"seed {seed}: alone {default['student_alone']['accuracy']:.4f}, distilled default "
              f"{default['student_kd']['accuracy']:.4f}, distilled tuned {tuned['student_kd']['accuracy']:.4f}; "
              f"best {best}", flush=True)

    def column(which: int, role: str, key: str = "accuracy") -> list[float]:
        return [r[which][role][key] for r in rows]

    lines = ["| model | test accuracy | macro F1 | agreement with the teacher |", "|---|---|---|---|"]
    for label, which, role in [("teacher", 0, "teacher"), ("student alone", 0, "student_alone"),
                               ("distilled, demo defaults (T=4, alpha=0.1, lr 3e-3)", 0, "student_kd"),
                               ("distilled, tuned on validation", 1, "student_kd")]:
        agree = "-" if role == "teacher" else mean_std(column(which, role, "agreement"))
        lines.append(f"| {label} | {mean_std(column(which, role))} | {mean_std(column(which, role, 'macro_f1'))} "
                     f"| {agree} |")
    gain = [100 * (t - d) for t, d in zip(column(1, "student_kd"), column(0, "student_kd"), strict=True)]
    chosen = "; ".join(f"seed {s}: " + ", ".join(f"{k.split('.')[-1]} {v:.3g}" for k, v in p.items())
                       for s, p in zip(seeds, picks, strict=True))
    body = "\n".join([
        f"The demo (MNIST-1D, `cnn1d` teacher, MLP student) with a 4,000-sample transfer set and 20 distillation "
        f"epochs; `kdkit tune` with {trials} TPE trials over T in [1, 10] (log), alpha in [0, 0.9] and the "
        f"distillation lr in [3e-4, 1e-2] (log), scored by validation macro F1 (400 samples), "
        f"{'without pruning' if args.no_prune else 'median pruning on'}; then `kdkit train` with the best "
        f"values. Seeds {', '.join(map(str, seeds))}; mean ± sample std. Total wall time: "
        f"{(time.perf_counter() - start) / 60:.1f} min.",
        "",
        *lines,
        "",
        f"- tuned minus default, test accuracy points per seed: {' '.join(f'{g:+.1f}' for g in gain)} "
        f"(mean {statistics.mean(gain):+.1f})",
        f"- values found: {chosen}",
    ])
    print(body)
    if not args.quick:
        write_section("tune (no pruning)" if args.no_prune else "tune", body,
                      "OMP_NUM_THREADS=1 python bench/tune.py" + (" --no-prune" if args.no_prune else ""))


def _apply(raw: dict, values: dict) -> dict:
    from copy import deepcopy

    from kdkit.tune.space import set_path

    changed = deepcopy(raw)
    for path, value in values.items():
        set_path(changed, path, value)
    return changed


if __name__ == "__main__":
    main()
