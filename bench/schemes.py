"""Compare training schemes on MNIST-1D with the same student, data, epochs and initial weights, over seeds.

    OMP_NUM_THREADS=1 python bench/schemes.py            # full run, writes the "schemes" section of RESULTS.md
    OMP_NUM_THREADS=1 python bench/schemes.py --quick    # smoke test: 1 seed, 2 epochs, nothing written

Rows: the teacher, the student alone, offline KD from the teacher, Deep Mutual Learning with a peer of the
student's size and with a peer of the teacher's size (both trained from scratch with the student), self-distillation
from an EMA of the student's weights, KD from two teachers (two seeds of the teacher, probabilities averaged), and KD
through a teacher assistant of intermediate width (teacher -> assistant -> student).
Hyper-parameters are the papers' defaults or the demo's, untuned here.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from torch import nn
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import command_line, mean_std, write_section  # noqa: E402

from kdkit.data import load_builtin, make_loader  # noqa: E402
from kdkit.models import build_model  # noqa: E402
from kdkit.schemes import (  # noqa: E402
    MultiTeacherDistillation,
    MutualLearning,
    OfflineDistillation,
    Scheme,
    SelfDistillation,
    Supervised,
    distill_through_assistants,
)
from kdkit.settings import TrainSettings  # noqa: E402
from kdkit.terms import build_terms  # noqa: E402
from kdkit.trainer import fit, predict, seed_everything  # noqa: E402

TEACHER = ("cnn1d", {"width": 64, "depth": 3, "kernel": 5})
STUDENT = ("cnn1d", {"width": 8, "depth": 3, "kernel": 3})
ASSISTANT = ("cnn1d", {"width": 24, "depth": 3, "kernel": 3})
KD = [{"name": "kd", "T": 4.0, "alpha": 0.1}]


def build(spec: tuple[str, dict], shape: tuple[int, ...], classes: int, init_seed: int) -> nn.Module:
    seed_everything(init_seed)
    return build_model(spec[0], shape, classes, **spec[1])


def run_seed(seed: int, epochs: int) -> dict[str, tuple[float, float | None]]:
    """Test accuracy and agreement with the (first) teacher of every row, for one seed."""
    data = load_builtin("mnist1d", seed=seed, val_fraction=0.1)
    shape, classes = data.input_shape, data.num_classes
    settings = TrainSettings(epochs=epochs, batch_size=128, lr=3e-3, progress=False, seed=seed)
    val, test = make_loader(data.val, 512, False), make_loader(data.test, 512, False)

    def train() -> DataLoader:
        # a fresh loader per row: one shared loader's generator moves on, and each row would see another order
        return make_loader(data.train, 128, True, seed)

    teachers = [build(TEACHER, shape, classes, 1000 * seed + k) for k in range(2)]
    for teacher in teachers:
        fit(Supervised(teacher), train(), val, settings)
    kd = build_terms(KD)

    def peer(spec: tuple[str, dict]) -> nn.Module:
        return build(spec, shape, classes, seed + 7)

    def trained_with(make_scheme: Callable[[nn.Module], Scheme]) -> Callable[[nn.Module], object]:
        return lambda student: fit(make_scheme(student), train(), val, settings)

    rows: dict[str, Callable[[nn.Module], object]] = {
        "student alone": trained_with(Supervised),
        "offline KD (T=4, alpha=0.1)": trained_with(lambda s: OfflineDistillation(s, teachers[0], kd)),
        "mutual learning, student-size peer": trained_with(lambda s: MutualLearning(s, [peer(STUDENT)])),
        "mutual learning, teacher-size peer": trained_with(lambda s: MutualLearning(s, [peer(TEACHER)])),
        "self-distillation, EMA teacher (decay 0.99)": trained_with(lambda s: SelfDistillation(s, decay=0.99)),
        "KD from 2 teachers (mean probabilities)": trained_with(lambda s: MultiTeacherDistillation(s, teachers, kd)),
        "KD through a teacher assistant (width 24)": lambda s: distill_through_assistants(
            teachers[0], [peer(ASSISTANT)], s, KD, train(), val, settings),
    }
    teacher_logits, labels = predict(teachers[0], test)
    out: dict[str, tuple[float, float | None]] = {
        "teacher": (float((teacher_logits.argmax(1) == labels).mean()), None)}
    for name, train_student in rows.items():
        student = build(STUDENT, shape, classes, seed + 1)  # every student starts from the same weights
        train_student(student)
        predicted = predict(student, test)[0].argmax(1)
        out[name] = (float((predicted == labels).mean()), float((predicted == teacher_logits.argmax(1)).mean()))
        print(f"seed {seed} | {name}: accuracy {out[name][0]:.4f}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 epochs, nothing written")
    args = parser.parse_args()
    seeds, epochs = ([0], 2) if args.quick else (args.seeds, args.epochs)

    start = time.perf_counter()
    per_seed = [run_seed(seed, epochs) for seed in seeds]
    n_params = {role: sum(p.numel() for p in build(spec, (40,), 10, 0).parameters()) for role, spec in
                (("teacher", TEACHER), ("assistant", ASSISTANT), ("student", STUDENT))}
    alone = [r["student alone"][0] for r in per_seed]
    lines = ["| scheme | test accuracy | vs student alone (points, per seed) | agreement with the teacher |",
             "|---|---|---|---|"]
    for name in per_seed[0]:
        values = [r[name][0] for r in per_seed]
        diff = "-" if name in ("teacher", "student alone") else " ".join(
            f"{100 * (v - a):+.1f}" for v, a in zip(values, alone, strict=True))
        agree = "-" if name == "teacher" else mean_std([r[name][1] for r in per_seed])
        lines.append(f"| {name} | {mean_std(values)} | {diff} | {agree} |")
    body = "\n".join([
        f"MNIST-1D (kdkit's built-in split), teacher `cnn1d` width 64 ({n_params['teacher']:,} parameters), student "
        f"`cnn1d` width 8 ({n_params['student']:,} parameters), assistant `cnn1d` width 24 "
        f"({n_params['assistant']:,} parameters), {epochs} epochs each, AdamW lr 3e-3, batch 128, "
        "the model at its best validation epoch by macro F1 (the trainer's default monitor); rows paired (same "
        "initial weights and batch order). Mutual learning: T=1, alpha=0.5; self-distillation: KD T=4 "
        f"alpha=0.5 from the EMA. Seeds {', '.join(map(str, seeds))}; mean ± sample std. Total wall time: "
        f"{(time.perf_counter() - start) / 60:.1f} min.",
        "",
        *lines,
    ])
    print(body)
    if not args.quick:
        write_section("schemes", body, command_line("schemes.py", parser, args))


if __name__ == "__main__":
    main()
