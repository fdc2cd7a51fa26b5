"""Is one model's latency repeatable in one process? The demo's teacher and student timed together by
kdkit.measure.cost.measure (warm-up, interleaved rounds, fixed threads), twice in a row; the target is that the two
medians of each model differ by less than 20 %. A benchmark, not a test: on a loaded machine it can fail, and that is
worth knowing rather than retrying.

    OMP_NUM_THREADS=1 python bench/latency_repeat.py [--pairs 3]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_section  # noqa: E402

from kdkit.measure import cost  # noqa: E402
from kdkit.measure.spread import speedup, speedup_text  # noqa: E402
from kdkit.models import build_model  # noqa: E402

TARGET = 0.20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3, help="how many times to measure twice")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    models = {"teacher": build_model("cnn1d", (40,), 10, width=64, depth=3, kernel=5),
              "student": build_model("mlp", (40,), 10, hidden=[64])}
    lines = ["| pair | model | median latency b=1, first (ms) | second (ms) | difference | speed-up first / second |",
             "|---|---|---|---|---|---|"]
    worst = 0.0
    for pair in range(1, args.pairs + 1):
        runs = [cost.measure(models, (40,), threads=args.threads) for _ in range(2)]
        ups = [speedup(rows["teacher"], rows["student"]) for rows, _ in runs]
        for role in models:
            a, b = (rows[role]["latency_ms"] for rows, _ in runs)
            diff = abs(a - b) / min(a, b)
            worst = max(worst, diff)
            shown = " / ".join(speedup_text(u["speedup"], u["speedup_certain"]) for u in ups) if role == "student" \
                else "-"
            lines.append(f"| {pair} | {role} | {a:.4f} | {b:.4f} | {diff:.1%} | {shown} |")
    load = os.getloadavg()
    verdict = "met" if worst < TARGET else "missed"
    body = "\n".join([
        f"The demo's 1-D CNN teacher and MLP student (untrained; latency does not depend on the weights), each "
        f"measurement {cost.Plan().rounds} interleaved rounds after warm-up, {args.threads} torch thread(s); two "
        f"measurements back to back, {args.pairs} times. Largest difference between the two medians: {worst:.1%} "
        f"(target < {TARGET:.0%}: {verdict}). Load average (1/5/15 min) at the end: {load[0]:.2f}/{load[1]:.2f}/"
        f"{load[2]:.2f}" + (": the machine was shared with other jobs while this ran" if load[0] > 0.5 else "")
        + ". CPU only; no GPU run was made.", "", *lines])
    print(body)
    if not args.no_record:
        write_section("latency_repeat", body, f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')} python "
                      f"bench/latency_repeat.py --pairs {args.pairs} --threads {args.threads}")


if __name__ == "__main__":
    main()
