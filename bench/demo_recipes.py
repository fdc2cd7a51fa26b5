"""Which recipe should `kdkit demo` use? Variants of its distillation stage, paired over seeds, chosen on validation.

    OMP_NUM_THREADS=2 python bench/demo_recipes.py [--seeds 0 1 2]     # writes the "demo_recipes" section

Per seed the demo's teacher and student alone are trained once (exactly as `kdkit demo` does); every variant then
distils the same initial student (the demo's seed + 1) with the same batch order. The variant `kdkit demo` adopts
is the one with the best mean VALIDATION accuracy; test accuracy is reported beside it, never used to choose.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import mean_std, write_section  # noqa: E402

from kdkit.data import Indexed, build_data, make_loader  # noqa: E402
from kdkit.data.loaders import EVAL_BATCH_SIZE  # noqa: E402
from kdkit.families.classification.config import parse_config  # noqa: E402
from kdkit.families.classification.demo import DEMOS  # noqa: E402
from kdkit.families.classification.pipeline import build_models, build_student, distillation_data  # noqa: E402
from kdkit.measure import metrics  # noqa: E402
from kdkit.schemes import OfflineDistillation, Supervised  # noqa: E402
from kdkit.terms import build_terms  # noqa: E402
from kdkit.trainer.loop import fit, predict  # noqa: E402

MIXUP = {"name": "mixup", "alpha": 0.4}
SHIFT = {"name": "crop", "padding": 4}
T2 = [{"name": "kd", "T": 2.0, "alpha": 0.0}]
# variant -> changes to the demo's `distill` section (and `data.transfer_size` under the key "transfer_size")
VARIANTS: dict[str, dict[str, Any]] = {
    "demo as it was (T=4, alpha=0.1, cached teacher, 30 epochs)": {},
    "T=2, alpha=0": {"losses": T2},
    "mixup, live teacher": {"cache_teacher": False, "train": {"augment": [MIXUP]}},
    "shift + mixup, live teacher": {"cache_teacher": False, "train": {"augment": [SHIFT, MIXUP]}},
    "patient: 60 epochs": {"train": {"epochs": 60}},
    "mixup + 60 epochs": {"cache_teacher": False, "train": {"epochs": 60, "augment": [MIXUP]}},
    "T=2, alpha=0, 60 epochs": {"losses": T2, "train": {"epochs": 60}},
    "T=2, alpha=0, 120 epochs": {"losses": T2, "train": {"epochs": 120}},
    "T=2, alpha=0, 60 epochs, 56k transfer": {"losses": T2, "train": {"epochs": 60}, "transfer_size": 56_000},
}


# the demo as it was before this benchmark chose its recipe; every variant starts from it
BASELINE = {"transfer_size": 28_000, "losses": [{"name": "kd", "T": 4.0, "alpha": 0.1}], "train": {"epochs": 30}}


def variant_config(seed: int, changes: dict[str, Any]):
    raw = {"seed": seed, "output_dir": "runs/bench_demo_recipes", **copy.deepcopy(DEMOS["signals"](False))}
    raw["train"]["progress"] = False
    raw["data"]["transfer_size"] = BASELINE["transfer_size"]
    raw["distill"]["losses"] = copy.deepcopy(BASELINE["losses"])
    raw["distill"]["train"].update(BASELINE["train"])
    changes = dict(changes)
    if "transfer_size" in changes:
        raw["data"]["transfer_size"] = changes.pop("transfer_size")
    for key, value in changes.items():
        raw["distill"][key] = {**raw["distill"].get(key, {}), **value} if isinstance(value, dict) else value
    return parse_config(raw)


def accuracy(model, loader) -> float:
    logits, labels = predict(model, loader, torch.device("cpu"))
    return metrics.accuracy(logits, labels)


def run_seed(seed: int, variants: list[str], out: Path) -> dict[str, dict[str, float]]:
    """One seed; variants already measured (out/seed<N>.json, same code and thread count) are not trained again."""
    saved = out / f"seed{seed}.json"
    results = json.loads(saved.read_text()) if saved.exists() else {}
    if all(name in results for name in variants):
        return results
    cfg = variant_config(seed, {})
    bundle = build_data(cfg.data, cfg.seed)
    models = build_models(cfg, bundle)
    val = make_loader(bundle.val, EVAL_BATCH_SIZE, shuffle=False)
    test = make_loader(bundle.test, EVAL_BATCH_SIZE, shuffle=False)
    for role, stage in (("teacher", "teacher"), ("student_alone", "student")):
        s = cfg.settings(stage)
        fit(Supervised(models[role]), make_loader(bundle.train, s.batch_size, shuffle=True, seed=s.seed), val, s)
    results.update({role: {"val": accuracy(models[role], val), "test": accuracy(models[role], test)}
                    for role in ("teacher", "student_alone")})
    bundles = {cfg.data.transfer_size: bundle}
    for name in variants:
        if name in results:
            continue
        start = time.perf_counter()
        vcfg = variant_config(seed, VARIANTS[name])
        if vcfg.data.transfer_size not in bundles:  # the same train/val/test split, a larger transfer set
            bundles[vcfg.data.transfer_size] = build_data(vcfg.data, vcfg.seed)
        bundle = bundles[vcfg.data.transfer_size]
        student = build_student(vcfg, bundle)  # the same initial weights as the student-alone row
        distill_set = distillation_data(vcfg, bundle)
        cached = vcfg.distill.cache_teacher
        if cached:
            distill_set = Indexed(distill_set)
        s = vcfg.settings("distill")
        scheme = OfflineDistillation(student, models["teacher"], build_terms(vcfg.distill.losses),
                                     cache_size=len(distill_set) if cached else None)
        fit(scheme, make_loader(distill_set, s.batch_size, shuffle=True, seed=s.seed), val, s)
        scheme.close()
        results[name] = {"val": accuracy(student, val), "test": accuracy(student, test),
                         "seconds": time.perf_counter() - start}
        saved.write_text(json.dumps(results, indent=1))
        print(f"seed {seed} {name}: val {results[name]['val']:.4f} test {results[name]['test']:.4f} "
              f"({results[name]['seconds']:.0f} s)", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", default="runs/bench_demo_recipes")
    parser.add_argument("--print-only", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = [run_seed(seed, args.variants, out) for seed in args.seeds]
    lines = ["| distillation stage | val accuracy | test accuracy | paired Δ test vs alone (points ± s.e.) | "
             "gap closed (test) | seconds |", "|---|---|---|---|---|---|"]
    for name in ["teacher", "student_alone", *args.variants]:
        val = [r[name]["val"] for r in runs]
        test = [r[name]["test"] for r in runs]
        delta = gap = secs = "-"
        if name not in ("teacher", "student_alone"):
            diffs = [100 * (r[name]["test"] - r["student_alone"]["test"]) for r in runs]
            se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else 0.0
            delta = f"{statistics.mean(diffs):+.2f} ± {se:.2f}"
            gap = mean_std([(r[name]["test"] - r["student_alone"]["test"])
                            / (r["teacher"]["test"] - r["student_alone"]["test"]) for r in runs], ".3f")
            secs = f"{statistics.mean(r[name]['seconds'] for r in runs):.0f}"
        lines.append(f"| {name} | {mean_std(val)} | {mean_std(test)} | {delta} | {gap} | {secs} |")
    best = max(args.variants, key=lambda n: statistics.mean(r[n]["val"] for r in runs))
    body = "\n".join([
        f"`kdkit demo` (MNIST-1D, `cnn1d` teacher, `mlp` student) as it was before this benchmark (28,000 "
        f"generated transfer samples, KD T=4 alpha=0.1, 30 distillation epochs), its distillation stage varied; "
        f"seeds {args.seeds}; every variant distils the same initial student with the "
        f"same batch order. Mixup and shifts are applied to the batch that teacher and student both see (the "
        f"teacher's outputs then cannot be cached). Seconds: the distillation stage alone, while other work shared "
        f"the machine. Whole run: {time.perf_counter() - start:.0f} s (variants measured by an earlier run of the "
        "same script are read from its per-seed files).",
        "",
        *lines,
        "",
        f"Best mean validation accuracy: **{best}** (chosen on validation only).",
    ])
    print(body)
    if not args.print_only:
        write_section("demo_recipes", body, "OMP_NUM_THREADS=2 python bench/demo_recipes.py --seeds "
                      + " ".join(map(str, args.seeds)))


if __name__ == "__main__":
    main()
