"""`kdkit demo` quality over several seeds: mean +- std of the three rows, and the gap closed by distillation.

    python bench/demo_quality.py [--seeds 0 1 2]

Writes its section of bench/RESULTS.md. Timing columns are from the same process, one model after another.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).parent))
from _results import mean_std, write_section  # noqa: E402

from kdkit.families.classification.demo import demo_config  # noqa: E402
from kdkit.families.classification.pipeline import run  # noqa: E402

METRICS = ["accuracy", "macro_f1", "nll", "ece", "agreement", "predictive_kl", "latency_ms", "throughput", "speedup"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/bench_demo")
    args = parser.parse_args()

    per_seed, seconds = [], []
    for seed in args.seeds:
        start = time.perf_counter()
        result = run(demo_config(seed=seed, output_dir=f"{args.out}/seed{seed}"), console=Console(quiet=True),
                     overwrite=True)
        seconds.append(time.perf_counter() - start)
        per_seed.append({r["role"]: r for r in result.rows})
        rows = per_seed[-1]
        print(f"seed {seed}: " + ", ".join(f"{k} acc {rows[k]['accuracy']:.4f}" for k in rows)
              + f" ({seconds[-1]:.0f} s)", flush=True)

    lines = ["| model | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    roles = [("teacher", "teacher"), ("student_alone", "student alone"), ("student_kd", "distilled student")]
    for role, label in roles:
        cells = []
        for m in METRICS:
            values = [s[role][m] for s in per_seed if s[role].get(m) is not None]
            digits = 3 if m in ("latency_ms", "speedup") else (0 if m == "throughput" else 4)
            cells.append(mean_std(values, f".{digits}f") if values else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    gain = [100 * (s["student_kd"]["accuracy"] - s["student_alone"]["accuracy"]) for s in per_seed]
    gap = [(s["student_kd"]["accuracy"] - s["student_alone"]["accuracy"])
           / (s["teacher"]["accuracy"] - s["student_alone"]["accuracy"]) for s in per_seed]
    cfg = demo_config()
    body = "\n".join([
        f"Demo pipeline (`kdkit demo`): MNIST-1D, teacher `{cfg.teacher.name}` {cfg.teacher.params}, student "
        f"`{cfg.student.name}` {cfg.student.params}, loss {cfg.distill.losses}, transfer set "
        f"{cfg.data.transfer_size:,} generated samples; seeds {args.seeds}; test split of 1,000 samples.",
        "",
        *lines,
        "",
        f"- distilled - alone accuracy: **{mean_std(gain, '.2f')} points**",
        f"- gap closed (distilled - alone) / (teacher - alone): **{mean_std(gap, '.3f')}**",
        f"- wall time of one full demo run: {mean_std(seconds, '.0f')} s",
    ])
    print(body)
    write_section("demo_quality", body, "python bench/demo_quality.py --seeds " + " ".join(map(str, args.seeds)))


if __name__ == "__main__":
    main()
