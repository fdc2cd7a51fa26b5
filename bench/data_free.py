"""Data-free distillation (DeepInversion) on scikit-learn digits: how much of the teacher reaches a student that
never sees a real input, against students that do and against distillation on plain noise.

    OMP_NUM_THREADS=1 python bench/data_free.py            # full run, writes the "data_free" section of RESULTS.md
    OMP_NUM_THREADS=1 python bench/data_free.py --quick    # smoke test: 1 seed, few steps/epochs, nothing written

Rows: the teacher (trained on the real training set); the student trained alone on it with labels; the student
distilled on the real training inputs; the student distilled on DeepInversion inputs only; the same without the
BN-statistics prior (bn_weight=0, an ablation); and the student distilled on Gaussian noise (no synthesis). All
distilled students use the same loss (KD, T=4, no label term) and as many inputs as the real training set, so
only the inputs differ. Students keep their last epoch: a data-free run has no real validation data to pick by.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import command_line, mean_std, write_section  # noqa: E402

from kdkit.data import load_builtin, make_loader  # noqa: E402
from kdkit.data.loaders import EVAL_BATCH_SIZE  # noqa: E402
from kdkit.models import build_model  # noqa: E402
from kdkit.schemes import Supervised  # noqa: E402
from kdkit.schemes.data_free import distill_data_free, synthesize  # noqa: E402
from kdkit.trainer.loop import fit, predict, seed_everything  # noqa: E402
from kdkit.trainer.settings import TrainSettings  # noqa: E402

TEACHER = ("cnn2d", {"width": 32, "depth": 2})
STUDENT = ("cnn2d", {"width": 8, "depth": 2})
SYNTHESIS = {"steps": 200, "lr": 0.1, "batch_size": 128, "bn_weight": 1.0, "tv_weight": 1e-3, "l2_weight": 1e-4}
T = 4.0


def build(spec: tuple[str, dict], shape: tuple[int, ...], classes: int, init_seed: int) -> nn.Module:
    seed_everything(init_seed)
    return build_model(spec[0], shape, classes, **spec[1])


def run_seed(seed: int, teacher_epochs: int, student_epochs: int, steps: int) -> dict[str, tuple]:
    """(test accuracy, agreement with the teacher) per row, plus synthesis diagnostics, for one seed."""
    data = load_builtin("digits", seed=seed, val_fraction=0.1)
    shape, classes, n = data.input_shape, data.num_classes, len(data.train)
    train, val, test = (make_loader(data.train, 64, True, seed), make_loader(data.val, EVAL_BATCH_SIZE, False),
                        make_loader(data.test, EVAL_BATCH_SIZE, False))
    teacher = build(TEACHER, shape, classes, 1000 * seed)
    fit(Supervised(teacher), train, val, TrainSettings(epochs=teacher_epochs, lr=3e-3, progress=False, seed=seed))
    teacher_logits, labels = predict(teacher, test)
    settings = TrainSettings(epochs=student_epochs, batch_size=64, lr=3e-3, keep="last", progress=False, seed=seed)
    real_inputs = TensorDataset(data.train.tensors[0])  # labels dropped: the loss would ignore them anyway

    timings, hits = {}, {}

    def synthetic(bn_weight: float) -> Dataset:
        start = time.perf_counter()
        options = {**SYNTHESIS, "steps": steps, "bn_weight": bn_weight}
        made = synthesize(teacher, n, shape, classes, seed=seed, **options)
        timings[bn_weight] = time.perf_counter() - start
        with torch.no_grad():
            hits[bn_weight] = float((teacher(made.tensors[0]).argmax(1) == made.tensors[1]).float().mean())
        return made

    noise = TensorDataset(torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed)))
    rows = {
        "student alone (real data, labels)": None,
        "KD on the real training inputs": lambda: real_inputs,
        "data-free KD, DeepInversion inputs": lambda: synthetic(1.0),
        "data-free KD, DeepInversion without BN prior": lambda: synthetic(0.0),
        "KD on Gaussian noise": lambda: noise,
    }
    out: dict[str, tuple] = {"teacher": (float((teacher_logits.argmax(1) == labels).mean()), None)}
    for name, inputs in rows.items():
        student = build(STUDENT, shape, classes, seed + 1)  # every student starts from the same weights
        if inputs is None:
            fit(Supervised(student), train, None, settings)
        else:
            distill_data_free(student, teacher, inputs(), T=T, settings=settings)
        predicted = predict(student, test)[0].argmax(1)
        out[name] = (float((predicted == labels).mean()), float((predicted == teacher_logits.argmax(1)).mean()))
        print(f"seed {seed} | {name}: accuracy {out[name][0]:.4f}", flush=True)
    out["_synthesis"] = (timings[1.0], hits[1.0], hits[0.0])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="1 seed, 10 synthesis steps, 2 epochs, nothing written")
    args = parser.parse_args()
    seeds, teacher_epochs, student_epochs, steps = ([0], 2, 2, 10) if args.quick else (args.seeds, 20, 30, 200)

    start = time.perf_counter()
    per_seed = [run_seed(seed, teacher_epochs, student_epochs, steps) for seed in seeds]
    n_params = {role: sum(p.numel() for p in build(spec, (1, 8, 8), 10, 0).parameters()) for role, spec in
                (("teacher", TEACHER), ("student", STUDENT))}
    lines = ["| student trained on | test accuracy | agreement with the teacher |", "|---|---|---|"]
    for name in [k for k in per_seed[0] if not k.startswith("_")]:
        agree = "-" if name == "teacher" else mean_std([r[name][1] for r in per_seed])
        lines.append(f"| {name} | {mean_std([r[name][0] for r in per_seed])} | {agree} |")
    seconds, hit_bn, hit_plain = np.array([r["_synthesis"] for r in per_seed]).T
    sizes = load_builtin("digits", val_fraction=0.1)
    body = "\n".join([
        f"scikit-learn digits (8x8; {len(sizes.train):,} training images after the validation split, "
        f"{len(sizes.test)} test images), teacher "
        f"`cnn2d` width 32 ({n_params['teacher']:,} parameters, {teacher_epochs} epochs, best validation epoch), "
        f"student `cnn2d` width 8 ({n_params['student']:,} parameters, {student_epochs} epochs, last epoch), AdamW "
        f"lr 3e-3, batch 64. Distilled rows: KD T={T:g}, no label term, on as many inputs as the real training set. "
        f"DeepInversion: {steps} Adam steps per batch of 128 from Gaussian noise, lr 0.1 (cosine), BN weight 1, "
        f"TV weight 1e-3, L2 weight 1e-4. Seeds {', '.join(map(str, seeds))}; mean ± sample std. Total wall time: "
        f"{(time.perf_counter() - start) / 60:.1f} min.",
        "",
        *lines,
        "",
        f"- time to synthesise one training-set-sized set: {mean_std(list(seconds), '.1f')} s (OMP_NUM_THREADS=1)",
        f"- synthetic inputs the teacher assigns to their target class: {mean_std(list(hit_bn))} with the BN prior, "
        f"{mean_std(list(hit_plain))} without",
    ])
    print(body)
    if not args.quick:
        write_section("data_free", body, command_line("data_free.py", parser, args))


if __name__ == "__main__":
    main()
