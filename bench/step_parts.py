"""The parts of a distillation step that kdkit makes cheaper, each beside the plain PyTorch it replaces, in one run.

    OMP_NUM_THREADS=1 python bench/step_parts.py [--rounds 15] [--no-record]

- log_softmax over 10 classes (batch 256), forward and backward: ``torch.log_softmax(x, 1)`` against
  ``kdkit.losses.softmax.log_softmax`` (the same numbers along dim 0 of the transposed view; see its docstring);
- the KD term (T=4, batch 256, 10 classes) forward and backward: ``T^2 * F.kl_div(F.log_softmax(s/T),
  F.log_softmax(t/T), batchmean, log_target)`` against ``kdkit.losses.kd_loss`` (one autograd node, closed-form
  gradient).

Each pair runs in interleaved rounds (the order alternates), after a warm-up; reported are the median time per
call, its interquartile range, and the ratio of medians (marked uncertain when the ranges overlap).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from _results import command_line, write_section  # noqa: E402

from kdkit.losses import kd_loss  # noqa: E402
from kdkit.losses.softmax import log_softmax  # noqa: E402
from kdkit.measure.spread import Spread  # noqa: E402


def per_call_us(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def pair(plain: Callable[[], object], kdkit: Callable[[], object], rounds: int, calls: int) -> tuple[Spread, Spread]:
    """Median and IQR (microseconds per call) of both, measured in alternating order after a warm-up."""
    for fn in (plain, kdkit):
        per_call_us(fn, max(1, calls // 4))
    times: tuple[list[float], list[float]] = ([], [])
    for r in range(rounds):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        for i in order:
            times[i].append(per_call_us((plain, kdkit)[i], calls))
    return Spread.of(times[0]), Spread.of(times[1])


def softmax_pair(rounds: int) -> tuple[Spread, Spread]:
    x = torch.randn(256, 10, requires_grad=True)
    return pair(lambda: torch.log_softmax(x, 1).sum().backward(), lambda: log_softmax(x).sum().backward(),
                rounds, 300)


def kd_pair(rounds: int) -> tuple[Spread, Spread]:
    s, t, T = torch.randn(256, 10, requires_grad=True), torch.randn(256, 10), 4.0

    def composed() -> None:
        loss = F.kl_div(F.log_softmax(s / T, 1), F.log_softmax(t / T, 1), reduction="batchmean", log_target=True)
        (loss * T * T).backward()

    return pair(composed, lambda: kd_loss(s, t, temperature=T).backward(), rounds, 300)


def ratio_text(plain: Spread, kdkit: Spread) -> str:
    text = f"{plain.median / kdkit.median:.2f}x (range {plain.q1 / kdkit.q3:.2f} to {plain.q3 / kdkit.q1:.2f})"
    return text + (" (uncertain: spreads overlap)" if plain.overlaps(kdkit) else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-record", action="store_true", help="print only; do not write bench/RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cases = {
        "log_softmax, 256 x 10, forward + backward": softmax_pair(args.rounds),
        "KD term (T=4), 256 x 10, forward + backward": kd_pair(args.rounds),
    }
    load = os.getloadavg()
    lines = [f"{args.rounds} interleaved rounds per pair, {args.threads} torch thread(s), CPU; load average "
             f"(1/5/15 min) at the end {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}.", "",
             "| part | plain PyTorch, us (IQR) | kdkit, us (IQR) | plain / kdkit |", "|---|---|---|---|"]
    for name, (plain, kdkit) in cases.items():
        lines.append(f"| {name} | {plain.median:,.0f} ({plain.q1:,.0f}-{plain.q3:,.0f}) | {kdkit.median:,.0f} "
                     f"({kdkit.q1:,.0f}-{kdkit.q3:,.0f}) | {ratio_text(plain, kdkit)} |")
    body = "\n".join(lines)
    print(body)
    if not args.no_record:
        write_section("step_parts", body, command_line("step_parts.py", parser, args))


if __name__ == "__main__":
    main()
