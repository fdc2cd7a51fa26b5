"""Image-folder distillation on real images: scikit-learn's handwritten `digits` (1,797 8x8 scans) written out as
an image folder of 32x32 RGB PNGs, a ResNet-18 teacher trained from random init (nothing is downloaded), and the
tiny CNN student alone and distilled. Mean +- std over seeds of the three rows, with latency at batch 1 and 64
measured in this process, teacher and students interleaved, after training.

    OMP_NUM_THREADS=1 python bench/image_folder.py [--seeds 0 1 2] [--teacher-epochs 30] [--student-epochs 100]
                                                   [--keep last] [--unlabelled 0.5] [--random-crop 3]

The default recipe (30 teacher epochs; 100 student epochs for both students, each ending at its last epoch) was
chosen on a pseudo-test split carved from the training images, never on the test images: distillation needs more
epochs than training alone, and picking the best epoch on a 144-image validation split favoured early epochs.

`--unlabelled F` moves a stratified fraction F of the training images into root/unlabelled/ (their labels
dropped): the teacher and both students then learn from the labelled rest, and the distilled student also from
the teacher's outputs on the unlabelled images (a transfer set, as in `kdkit demo`). Its results are recorded in a
section of their own.

Writes its section of bench/RESULTS.md. Targets: the student at least 10x faster than the teacher at
batch 64 on CPU; the distilled student closer to the teacher than the student alone in accuracy and agreement.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).parent))
from _results import mean_std, write_section  # noqa: E402

from kdkit.families.classification.config import parse_config  # noqa: E402
from kdkit.families.classification.pipeline import run  # noqa: E402
from kdkit.measure.cost import latency_ms  # noqa: E402

ROLES = {"teacher": "teacher (ResNet-18)", "student_alone": "student alone (tiny_cnn)",
         "student_kd": "distilled student (tiny_cnn)"}
SIZE = 32


def write_digits_folder(root: Path, unlabelled: float = 0.0, pseudo_test: bool = False) -> dict[str, int]:
    """digits -> root/{train,test}/<digit>/<n>.png, upsampled to 32x32 RGB. The test split is the fixed stratified
    20% of kdkit's built-in `digits` (random_state=0); there is no val/ folder, so each seed holds out its own.
    With `unlabelled` > 0 that stratified fraction of the training images goes to root/unlabelled/ instead.
    With `pseudo_test` the real test images are left out and a stratified quarter of the training images is the
    test/ folder instead: for choosing a recipe without looking at the test images."""
    d = load_digits()
    pixels = (d.images * (255 / 16)).round().astype(np.uint8)
    rest, test = train_test_split(np.arange(len(pixels)), test_size=0.2, stratify=d.target, random_state=0)
    if pseudo_test:
        rest, test = train_test_split(rest, test_size=0.25, stratify=d.target[rest], random_state=7)
    unlabelled_rows = np.array([], dtype=int)
    if unlabelled > 0:
        rest, unlabelled_rows = train_test_split(rest, test_size=unlabelled, stratify=d.target[rest], random_state=0)
    for split, rows in (("train", rest), ("test", test), ("unlabelled", unlabelled_rows)):
        for i in rows:
            folder = root / split if split == "unlabelled" else root / split / str(d.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            img = Image.fromarray(pixels[i], "L").resize((SIZE, SIZE), Image.BICUBIC).convert("RGB")
            img.save(folder / f"{i:04d}.png")
    return {"train": len(rest), "test": len(test), "unlabelled": len(unlabelled_rows)}


def config(root: Path, out: Path, seed: int, teacher_epochs: int, student_epochs: int, T: float, alpha: float,
           random_crop: int = 0, keep: str = "last"):
    return parse_config({
        "seed": seed,
        "output_dir": str(out / f"seed{seed}"),
        "data": {"name": "image_folder", "root": str(root), "image_size": SIZE, "channels": 3,
                 "augment": False, "val_fraction": 0.1,  # flipping a digit changes it: no flips
                 "random_crop": random_crop},
        "train": {"epochs": student_epochs, "batch_size": 64, "lr": 3e-3, "weight_decay": 1e-4, "progress": False,
                  "keep": keep},
        # the teacher ends at its best validation epoch: it must be as good as it can be
        "teacher": {"name": "torchvision:resnet18", "train": {"epochs": teacher_epochs, "lr": 1e-3, "keep": "best"}},
        "student": {"name": "tiny_cnn"},
        # with random shifts the teacher must see each new view: no cache
        "distill": {"losses": [{"name": "kd", "T": T, "alpha": alpha}], "cache_teacher": not random_crop},
    })


def interleaved_latency(models: dict, batch_sizes: tuple[int, ...], rounds: int = 5) -> dict[str, dict[int, float]]:
    """Median over `rounds` of each model's median latency, the models taking turns so that load from other
    processes falls on all of them alike."""
    samples: dict[str, dict[int, list[float]]] = {role: {b: [] for b in batch_sizes} for role in models}
    for _ in range(rounds):
        for b in batch_sizes:
            for role, model in models.items():
                samples[role][b].append(latency_ms(model.cpu(), (3, SIZE, SIZE), b, repeats=20, warmup=3))
    return {role: {b: statistics.median(v) for b, v in per.items()} for role, per in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--teacher-epochs", type=int, default=30)
    parser.add_argument("--student-epochs", type=int, default=100)
    parser.add_argument("--keep", choices=["best", "last"], default="last",
                        help="the students end at their best validation epoch or at their last")
    parser.add_argument("--T", type=float, default=4.0, help="KD temperature")
    parser.add_argument("--alpha", type=float, default=0.1, help="weight of the hard-label CE in KD")
    parser.add_argument("--unlabelled", type=float, default=0.0,
                        help="fraction of the training images moved to unlabelled/ (a transfer set)")
    parser.add_argument("--random-crop", type=int, default=0,
                        help="shift training images at random by up to this many pixels (all three models)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_image_folder"))
    parser.add_argument("--no-write", action="store_true", help="print the table but leave bench/RESULTS.md alone")
    args = parser.parse_args()

    start_all = time.perf_counter()
    per_seed = []
    with tempfile.TemporaryDirectory(prefix="kdkit_digits_") as tmp:
        counts = write_digits_folder(Path(tmp), args.unlabelled)
        for seed in args.seeds:
            start = time.perf_counter()
            cfg = config(Path(tmp), args.out, seed, args.teacher_epochs, args.student_epochs, args.T, args.alpha,
                         args.random_crop, args.keep)
            result = run(cfg, console=Console(quiet=True, width=200), quick_cost=True,  # latency: below
                         overwrite=True)
            timing = interleaved_latency(result.models, (1, 64))
            rows = {r["role"]: dict(r) for r in result.rows}
            for role in ROLES:
                rows[role]["lat1"], rows[role]["lat64"] = timing[role][1], timing[role][64]
                rows[role]["speedup1"] = timing["teacher"][1] / timing[role][1]
                rows[role]["speedup64"] = timing["teacher"][64] / timing[role][64]
            per_seed.append(rows)
            print(f"seed {seed}: " + ", ".join(f"{r} acc {rows[r]['accuracy']:.4f}" for r in ROLES)
                  + f", student speed-up b=64 {rows['student_kd']['speedup64']:.1f}x"
                  f" ({time.perf_counter() - start:.0f} s)", flush=True)
    wall = time.perf_counter() - start_all

    columns = [("params", "params", ",.0f"), ("accuracy", "accuracy", ".4f"), ("macro_f1", "macro F1", ".4f"),
               ("agreement", "agreement with teacher", ".4f"), ("lat1", "latency b=1 (ms)", ".3f"),
               ("lat64", "latency b=64 (ms)", ".2f"), ("speedup1", "speed-up b=1", ".1f"),
               ("speedup64", "speed-up b=64", ".1f")]
    lines = ["| model | " + " | ".join(c[1] for c in columns) + " |", "|---|" + "---|" * len(columns)]
    for role, label in ROLES.items():
        cells = []
        for key, _, fmt in columns:
            values = [s[role][key] for s in per_seed if s[role].get(key) is not None]
            cells.append("-" if not values else format(values[0], fmt) if key == "params" else mean_std(values, fmt))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    def gap(s: dict, role: str) -> float:
        return abs(s[role]["accuracy"] - s["teacher"]["accuracy"])

    fastest = min(s["student_kd"]["speedup64"] for s in per_seed)
    closer_acc = sum(gap(s, "student_kd") < gap(s, "student_alone") for s in per_seed)
    closer_agree = sum(s["student_kd"]["agreement"] > s["student_alone"]["agreement"] for s in per_seed)
    mean_gap = {r: statistics.mean(gap(s, r) for s in per_seed) for r in ("student_alone", "student_kd")}
    mean_agree = {r: statistics.mean(s[r]["agreement"] for s in per_seed) for r in ("student_alone", "student_kd")}
    n = len(per_seed)

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    extra = (f"{counts['unlabelled']} more in unlabelled/ with their labels dropped, a transfer set for the "
             "distilled student only; " if counts["unlabelled"] else "")
    teaching = (f"training images of all three models shifted at random by up to {args.random_crop} px, the "
                "teacher labelling each new view" if args.random_crop else "cached teacher outputs")
    body = "\n".join([
        f"Data: scikit-learn `digits` written as an image folder of {SIZE}x{SIZE} RGB PNGs ({counts['train']} train, "
        f"{extra}of which 10% is held out for validation per seed; {counts['test']} test). "
        "Teacher `torchvision:resnet18` "
        f"from random init, {args.teacher_epochs} epochs, ending at its best validation epoch; students `tiny_cnn`, "
        f"{args.student_epochs} epochs alone and distilled, each ending at its {args.keep} epoch (Hinton KD, "
        f"T={args.T:g}, alpha={args.alpha:g}, {teaching}). Seeds: "
        f"{', '.join(map(str, args.seeds))}; mean ± sample std over seeds. Latency: median of 5 interleaved rounds of "
        f"20 timed forward passes on CPU, in the same process right after training. Total wall time: {wall / 60:.1f} "
        "min.",
        "",
        *lines,
        "",
        f"- student at least 10x faster than the teacher at batch 64: {verdict(fastest >= 10)} (slowest seed "
        f"{fastest:.1f}x)",
        "- distilled student closer to the teacher in accuracy than the student alone, on the mean over seeds: "
        f"{verdict(mean_gap['student_kd'] < mean_gap['student_alone'])} (mean |accuracy gap to the teacher| "
        f"{mean_gap['student_kd']:.4f} distilled vs {mean_gap['student_alone']:.4f} alone; closer in "
        f"{closer_acc}/{n} seeds)",
        "- distilled student agrees more with the teacher than the student alone, on the mean over seeds: "
        f"{verdict(mean_agree['student_kd'] > mean_agree['student_alone'])} (mean agreement "
        f"{mean_agree['student_kd']:.4f} vs {mean_agree['student_alone']:.4f}; more in {closer_agree}/{n} seeds)",
    ])
    print(body)
    if not args.no_write:
        command = "OMP_NUM_THREADS=1 python bench/image_folder.py" + (
            f" --seeds {' '.join(map(str, args.seeds))}" if args.seeds != [0, 1, 2] else "")
        variant = []
        if (args.teacher_epochs, args.student_epochs, args.keep) != (30, 100, "last"):
            command += (f" --teacher-epochs {args.teacher_epochs} --student-epochs {args.student_epochs}"
                        f" --keep {args.keep}")
            variant.append(f"{args.teacher_epochs}/{args.student_epochs} epochs, {args.keep} epoch")
        if (args.T, args.alpha) != (4.0, 0.1):
            command += f" --T {args.T:g} --alpha {args.alpha:g}"
            variant.append(f"T {args.T:g}, alpha {args.alpha:g}")
        if args.unlabelled:
            command += f" --unlabelled {args.unlabelled:g}"
            variant.append(f"unlabelled {args.unlabelled:g}")
        if args.random_crop:
            command += f" --random-crop {args.random_crop}"
            variant.append(f"random crop {args.random_crop}")
        write_section("image_folder" + (f" ({', '.join(variant)})" if variant else ""), body, command)


if __name__ == "__main__":
    main()
