"""Peak memory and step time of a token divergence computed from the two models' LM heads, on CPU, at real
vocabulary sizes: the plain path (both heads' full logits, then the divergence), the plain path with the
divergence's vocabulary chunks (`chunk_size`, which still holds both logits), and the fused head + divergence
(kdkit.losses.fused_head: chunks of tokens), its logits recomputed in the backward pass (`recompute=True`) or its
gradients computed in the forward pass (`recompute=False`, the default).

    OMP_NUM_THREADS=1 nice -n 10 python bench/lm_fused_head.py           # writes the "lm_fused_head" section
    OMP_NUM_THREADS=1 python bench/lm_fused_head.py --quick              # small sizes, nothing written

One step = the student's head on its final hidden states, the frozen teacher's head on its own (no gradient),
forward KL at T = 1 over every token, and the backward pass into the student's hidden states and head weight.
Each (vocabulary, path) runs in its own process: peak memory is the rise of the process's peak resident set
(getrusage ru_maxrss) over the steps, from its resident set just before (inputs and weights already allocated),
with glibc told to map every allocation over 64 KiB on its own (MALLOC_MMAP_THRESHOLD_), so that freed tensors
leave the resident set at once and its peak is the peak of live memory; step time is the median of `--repeats`
steps after the first, on one thread, in CPU seconds of the process (time.process_time: on a machine shared by
other jobs, wall time mostly measures the wait for a core).

Targets (stated before measuring): the fused path's peak at most 25% of the plain path's, its step time at most
1.3x the plain path's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import command_line, write_section  # noqa: E402

from kdkit.losses import ForwardKL  # noqa: E402
from kdkit.losses.fused_head import fused_head_divergence  # noqa: E402

PATHS = ("plain", "plain, vocabulary chunks", "fused, recompute", "fused, gradients in forward")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(args: argparse.Namespace) -> None:
    """One (vocabulary, path): print {"peak_mb", "step_s"} as JSON."""
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    tokens = args.batch * args.length
    h_s = torch.randn(tokens, args.student_width, generator=g).requires_grad_(True)
    h_t = torch.randn(tokens, args.teacher_width, generator=g)
    w_s = (torch.randn(args.vocab, args.student_width, generator=g) * 0.05).requires_grad_(True)
    w_t = torch.randn(args.vocab, args.teacher_width, generator=g) * 0.05
    loss = ForwardKL(chunk_size=args.vocab_chunk if args.path == "plain, vocabulary chunks" else None)

    def step(h_s: torch.Tensor, w_s: torch.Tensor, h_t: torch.Tensor, w_t: torch.Tensor) -> None:
        h_s.grad, w_s.grad = None, None
        if args.path.startswith("fused"):
            value = fused_head_divergence(loss, h_s, w_s, h_t, w_t, chunk_size=args.token_chunk,
                                          recompute=args.path == "fused, recompute")
        else:
            with torch.no_grad():
                teacher = h_t @ w_t.t()
            value = loss(h_s @ w_s.t(), teacher)
        value.backward()

    small = [x[:8, :].detach().clone().requires_grad_(x.requires_grad) for x in (h_s, w_s, h_t, w_t)]
    step(*small)  # loads the kernels and the allocator's first pages outside the measurement
    before = _rss_mb()
    times = []
    for _ in range(args.repeats + 1):
        start = time.process_time()
        step(h_s, w_s, h_t, w_t)
        times.append(time.process_time() - start)
    print(json.dumps({"peak_mb": _peak_mb() - before, "step_s": statistics.median(times[1:])}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocabs", type=int, nargs="+", default=[32_000, 128_000])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--student-width", type=int, default=256)
    parser.add_argument("--teacher-width", type=int, default=512)
    parser.add_argument("--token-chunk", type=int, default=128)
    parser.add_argument("--vocab-chunk", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--vocab", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", choices=PATHS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.quick:
        args.vocabs, args.batch, args.length, args.repeats = [4_000], 2, 64, 1
    start = time.perf_counter()
    results: dict[tuple[int, str], dict[str, float]] = {}
    for vocab in args.vocabs:
        for path in PATHS:
            cmd = [sys.executable, __file__, "--child", "--vocab", str(vocab), "--path", path]
            for key in ("batch", "length", "student_width", "teacher_width", "token_chunk", "vocab_chunk",
                        "repeats"):
                cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
            env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
            results[(vocab, path)] = json.loads(out.stdout.strip().splitlines()[-1])
            print(vocab, path, results[(vocab, path)], flush=True)
    tokens = args.batch * args.length
    lines = [f"{tokens:,} tokens (batch {args.batch} x length {args.length}), student hidden width "
             f"{args.student_width}, teacher {args.teacher_width}, forward KL at T = 1, float32, one thread; fused: "
             f"{args.token_chunk} tokens per chunk; vocabulary chunks: {args.vocab_chunk} ids. One float32 logit "
             f"tensor is {tokens * args.vocabs[-1] * 4 / 2**20:,.0f} MiB at V = {args.vocabs[-1]:,}.", "",
             "| V | path | peak memory MiB | vs plain | step CPU s | vs plain |", "|---|---|---|---|---|---|"]
    verdicts = []
    for vocab in args.vocabs:
        base = results[(vocab, "plain")]
        for path in PATHS:
            r = results[(vocab, path)]
            lines.append(f"| {vocab:,} | {path} | {r['peak_mb']:,.0f} | {r['peak_mb'] / base['peak_mb']:.2f} | "
                         f"{r['step_s']:.2f} | {r['step_s'] / base['step_s']:.2f}x |")
        for path in PATHS[2:]:
            fused = results[(vocab, path)]
            memory_ok = fused["peak_mb"] <= 0.25 * base["peak_mb"]
            time_ok = fused["step_s"] <= 1.3 * base["step_s"]
            verdicts.append(f"- V = {vocab:,}, {path}: peak {fused['peak_mb'] / base['peak_mb']:.1%} of plain "
                            f"(target <= 25%: {'met' if memory_ok else 'not met'}), step time "
                            f"{fused['step_s'] / base['step_s']:.2f}x (target <= 1.3x: "
                            f"{'met' if time_ok else 'not met'}).")
    lines += ["", *verdicts, f"Run time {time.perf_counter() - start:.0f} s."]
    body = "\n".join(lines)
    print(body)
    if not args.quick:
        write_section("lm_fused_head", body, command_line("lm_fused_head.py", parser, args))


if __name__ == "__main__":
    main()
