"""Training throughput with cached views (distill.cached_views) against the student trained alone with the same
augmentation, on Fashion-MNIST.

    OMP_NUM_THREADS=1 nice -n 10 python bench/cached_views.py [--train-size 5000] [--views 8] [--rounds 3]

Rows, each a fit of `--epochs` epochs of the same student (tiny_cnn) with train.augment crop (padding 2) + flip,
batch 64, one torch thread, in interleaved rounds (the order alternates):
- student alone: Supervised, the augmentation applied live;
- distilled, cached views (hit): KD against the teacher's stored answers to V views per image, read from disk;
- distilled, live teacher: KD with a teacher forward per step on the live views (what cached views replace).
The store is built once before the rounds (a miss: V teacher forwards per image), and that time is reported; each
row runs once untimed first.
The teacher (small_cnn) is untrained: throughput does not depend on its weights. Target, fixed before measuring:
cached views reach >= 0.9x the student-alone throughput (median over rounds).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _results import command_line, write_section  # noqa: E402

from kdkit.data.fashion_mnist import fashion_mnist  # noqa: E402
from kdkit.data.loaders import make_loader  # noqa: E402
from kdkit.models import build_model  # noqa: E402
from kdkit.schemes import OfflineDistillation, Supervised  # noqa: E402
from kdkit.terms import build_terms  # noqa: E402
from kdkit.trainer.loop import fit  # noqa: E402
from kdkit.trainer.settings import TrainSettings  # noqa: E402
from kdkit.trainer.view_cache import ReplayedViews, replay_views  # noqa: E402

AUGMENT = [{"name": "crop", "padding": 2}, {"name": "flip"}]
TARGET = 0.9


def _model(name: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(name, num_classes=10, input_shape=(1, 28, 28))


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-size", type=int, default=5000)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-record", action="store_true", help="print only; do not write bench/RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    train = fashion_mnist(train_size=args.train_size, test_size=100).train
    s = TrainSettings(epochs=args.epochs, batch_size=64, augment=AUGMENT, progress=False)
    teacher = _model("small_cnn", 1)
    cache = Path(tempfile.mkdtemp(prefix="kdkit-views-"))
    views = ReplayedViews(train, AUGMENT, args.views, seed=0)
    builder = OfflineDistillation(_model("tiny_cnn", 0), teacher, build_terms([{"name": "kd"}]))
    build_s = _timed(lambda: replay_views(builder, views, None, s, cache))  # a miss: every view's forward

    def alone() -> None:
        fit(Supervised(_model("tiny_cnn", 0)), make_loader(train, 64, shuffle=True), None, s)

    def cached() -> None:
        scheme = OfflineDistillation(_model("tiny_cnn", 0), teacher, build_terms([{"name": "kd"}]))
        replay_views(scheme, views, None, s, cache)  # a hit: read from disk
        assert scheme.cache.info()["reused"]
        fit(scheme, make_loader(views, 64, shuffle=True), None, s)

    def live() -> None:
        scheme = OfflineDistillation(_model("tiny_cnn", 0), teacher, build_terms([{"name": "kd"}]))
        fit(scheme, make_loader(train, 64, shuffle=True), None, s)

    rows = {"student alone (live augmentation)": alone, "distilled, cached views (hit)": cached,
            "distilled, live teacher": live}
    for fn in rows.values():  # a warm-up of each: first-call costs (allocations, kernels) are not throughput
        fn()
    seconds: dict[str, list[float]] = {name: [] for name in rows}
    for r in range(args.rounds):
        for name in (list(rows) if r % 2 == 0 else list(rows)[::-1]):
            seconds[name].append(_timed(rows[name]))
    samples = args.train_size * args.epochs
    rate = {name: statistics.median(samples / t for t in times) for name, times in seconds.items()}
    base = rate["student alone (live augmentation)"]
    ratio = rate["distilled, cached views (hit)"] / base
    lines = [f"Fashion-MNIST, {args.train_size:,} training images, {args.views} views each, train.augment crop 2 + "
             f"flip, tiny_cnn student, small_cnn teacher, batch 64, {args.epochs} epochs per fit, {args.rounds} "
             "interleaved rounds, 1 torch thread.", "",
             "| row | samples/s (median) | per round | vs student alone |", "|---|---|---|---|"]
    for name, times in seconds.items():
        per = ", ".join(f"{samples / t:,.0f}" for t in times)
        lines.append(f"| {name} | {rate[name]:,.0f} | {per} | {rate[name] / base:.2f}x |")
    lines += ["", f"Building the store (a miss: {args.train_size * args.views:,} teacher forwards, written once): "
              f"{build_s:.1f} s. Every cached-views fit above read it from disk (a hit).", "",
              f"Target (fixed before measuring): cached views >= {TARGET}x the student alone: "
              f"{'hit' if ratio >= TARGET else 'missed'} ({ratio:.2f}x)."]
    body = "\n".join(lines)
    print(body)
    if not args.no_record:
        write_section("cached_views", body, command_line("cached_views.py", parser, args))


if __name__ == "__main__":
    main()
