"""How the training recipe of bench/image_folder.py was chosen without looking at its test images.

The real test images are left out; a stratified quarter of the remaining `digits` images is a pseudo-test folder
and the other three quarters are the training folder (see `write_digits_folder(pseudo_test=True)`). Each variant
runs the full pipeline (teacher, student alone, distilled student) per seed; teachers are trained once per seed and
setting and reused, so variants that differ only in the students share their teacher.

    OMP_NUM_THREADS=1 python bench/image_folder_recipe.py [--seeds 0 1 2 3 4 5]

Writes the section "image_folder recipe (pseudo-test)" of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).parent))
from _results import command_line, write_section  # noqa: E402
from image_folder import config, write_digits_folder  # noqa: E402

from kdkit.families.classification.pipeline import run  # noqa: E402

# name -> overrides of bench/image_folder.py's settings; the last one is that script's default recipe
VARIANTS: dict[str, dict] = {
    "10/20 epochs, best epoch (first recipe)": {"teacher_epochs": 10, "student_epochs": 20, "keep": "best"},
    "10/20 epochs, last epoch": {"teacher_epochs": 10, "student_epochs": 20, "keep": "last"},
    "10/100 epochs, last epoch": {"teacher_epochs": 10, "student_epochs": 100, "keep": "last"},
    "10/100 epochs, last epoch, T=2": {"teacher_epochs": 10, "student_epochs": 100, "keep": "last", "T": 2.0},
    "30/100 epochs, last epoch, random crop 2": {"teacher_epochs": 30, "student_epochs": 100, "keep": "last",
                                                 "random_crop": 2},
    "30/100 epochs, last epoch (default of image_folder.py)": {"teacher_epochs": 30, "student_epochs": 100,
                                                               "keep": "last"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--out", type=Path, default=Path("runs/bench_image_folder_recipe"))
    parser.add_argument("--no-write", action="store_true", help="print the table but leave bench/RESULTS.md alone")
    args = parser.parse_args()

    start = time.perf_counter()
    results: dict[str, list[dict[str, dict]]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="kdkit_digits_pseudo_") as tmp:
        counts = write_digits_folder(Path(tmp), pseudo_test=True)
        for seed in args.seeds:
            teachers: dict[tuple, Path] = {}  # (teacher epochs, random crop) -> trained teacher weights
            for i, (name, v) in enumerate(VARIANTS.items()):
                crop = v.get("random_crop", 0)
                cfg = config(Path(tmp), args.out / f"v{i}", seed, v["teacher_epochs"], v["student_epochs"],
                             v.get("T", 4.0), v.get("alpha", 0.1), crop, v["keep"])
                key = (v["teacher_epochs"], crop)
                if key in teachers:
                    cfg.teacher = cfg.teacher.model_copy(update={"checkpoint": teachers[key]})
                result = run(cfg, console=Console(quiet=True, width=200), quick_cost=True,
                             overwrite=True)
                teachers.setdefault(key, result.run_dir / "models" / "teacher.safetensors")
                results[name].append({r["role"]: r for r in result.rows})
                rows = results[name][-1]
                print(f"seed {seed} | {name}: teacher {rows['teacher']['accuracy']:.4f}, alone "
                      f"{rows['student_alone']['accuracy']:.4f}, distilled {rows['student_kd']['accuracy']:.4f}, "
                      f"agreement {rows['student_alone']['agreement']:.4f} -> {rows['student_kd']['agreement']:.4f}",
                      flush=True)

    n = len(args.seeds)
    lines = ["| recipe (teacher/student epochs) | teacher acc | alone acc | distilled acc | mean gap alone | "
             "mean gap distilled | agreement alone | agreement distilled | seeds closer in acc | "
             "seeds more agreement |",
             "|---|" + "---|" * 9]
    for name, per_seed in results.items():
        def mean(role: str, key: str, runs: list = per_seed) -> float:
            return statistics.mean(r[role][key] for r in runs)

        def gaps(role: str, runs: list = per_seed) -> list[float]:
            return [abs(r[role]["accuracy"] - r["teacher"]["accuracy"]) for r in runs]

        closer = sum(k < a for k, a in zip(gaps("student_kd"), gaps("student_alone"), strict=True))
        agree = sum(r["student_kd"]["agreement"] > r["student_alone"]["agreement"] for r in per_seed)
        lines.append(
            f"| {name} | {mean('teacher', 'accuracy'):.4f} | {mean('student_alone', 'accuracy'):.4f} | "
            f"{mean('student_kd', 'accuracy'):.4f} | {statistics.mean(gaps('student_alone')):.4f} | "
            f"{statistics.mean(gaps('student_kd')):.4f} | {mean('student_alone', 'agreement'):.4f} | "
            f"{mean('student_kd', 'agreement'):.4f} | {closer}/{n} | {agree}/{n} |")
    body = "\n".join([
        f"Pseudo-test split: the {counts['train'] + counts['test']} training images of `bench/image_folder.py` "
        f"split into {counts['train']} training images (10% of them held out for validation per seed) and "
        f"{counts['test']} pseudo-test images; the real test images are not used. ResNet-18 teacher from "
        "random init (ends at its best validation epoch), `tiny_cnn` students, Hinton KD T=4 alpha=0.1 unless "
        f"named. Means over seeds {', '.join(map(str, args.seeds))}; 'gap' is |student accuracy - teacher "
        f"accuracy| per seed. One pseudo-test image is {1 / counts['test']:.4f} of accuracy. Total wall time: "
        f"{(time.perf_counter() - start) / 60:.1f} min.",
        "",
        *lines,
    ])
    print(body)
    if not args.no_write:
        write_section("image_folder recipe (pseudo-test)", body, command_line("image_folder_recipe.py", parser, args))


if __name__ == "__main__":
    main()
