"""When distillation pays, measured: label budget x student size x teacher x unlabelled pool, on Fashion-MNIST.

    OMP_NUM_THREADS=1 python bench/kd_regimes.py --quick                  # smoke test: tiny slices, nothing written
    for w in 1 2; do OMP_NUM_THREADS=1 python bench/kd_regimes.py --print-only & done; wait    # the full map
    OMP_NUM_THREADS=1 python bench/kd_regimes.py --report-only            # the "kd_regimes" section, the heat map

Every cell compares a distilled student with the same student trained alone on the same labels. Axes:
- labels: 1,000 / 5,000 / 57,000 of the 57,000 training images, stratified (the images `data.train_size` picks);
- student: `strided_cnn` of about 3k / 30k / 100k parameters (downsampling at once, so each is far faster than
  the teacher);
- teacher (`cnn2d`, width 48, depth 3, trained with random crops and flips): "knowing", trained on all 57,000
  labels (the stand-in for a teacher pretrained elsewhere, as in the founding story: an ImageNet ResNet-18 and a
  small labelled X-ray set), or "same labels", trained on the labelled subset only, at 1,000 and 5,000 labels;
- unlabelled pool: none, or the rest of the 57,000 training images with their labels hidden, which only the
  teacher labels. At 57,000 labels there is no pool.
Cells: every label budget x student with the knowing teacher, with and without the pool; the same-labels teacher at
1,000 and 5,000 labels, with and without the pool. The distilled row of every cell is KD; the other methods
(`--methods`) run in the two cells of the founding story's student and budget (100k, 1,000 labels, knowing teacher,
with and without the pool).

Protocol (nothing reads the test split before the final evaluation):
1. Data split by data seed 0: 57,000 training, 3,000 validation (5%), 10,000 test images.
2. Teachers are trained once (init seed 0) and saved; every seed, row and later run loads them. The knowing teacher
   takes `--teacher-epochs` epochs of 57,000 images; a same-labels teacher as many optimizer steps as
   `--same-teacher-epochs` such epochs. The seeds vary the students, not the teachers or the labelled subset.
3. Every row trains for the same number of steps: `--epochs` epochs of about 57,000 samples (batch 256). A labelled
   set of n images without a pool is seen round(57,000 / n) times per epoch; pool rows see each of the 57,000
   images once per epoch, their labelled images with their label. The student ends at its last epoch.
4. Every row (alone and distilled, every cell) gets the same tuning budget: the 6 settings of its own grid, each a
   short run of `--tune-epochs` epochs with tuning seed 100, scored by validation accuracy. The student alone:
   learning rate 2e-3 or 5e-3 x no augmentation, random crops (2 pixels), or random crops and horizontal flips.
   KD: learning rate 2e-3 or 5e-3 x (T, alpha) in (1, 0.5), (4, 0.2), (4, 0.8). (A grid, not a sampler: with 6
   trials, random draws would leave some rows without the settings that matter most, e.g. the student alone
   without crops and flips together.)
5. With its best values, every row trains once per seed. Rows are paired: within a seed every row of a student
   starts from the same initial weights and sees the same batch order.
6. Test metrics; per-seed paired difference distilled - alone (points) with its standard error; gap closed =
   (distilled - alone) / (teacher - alone) with the cell's teacher; agreement = share of test images where the
   student predicts the teacher's class; speed-up = the teacher's latency / the student's at batch 64 on one
   thread (median of 7 interleaved rounds).

Distilled rows see random crops and flips as the student alone may, without a teacher forward per step: the
teacher's answers to `--views` (8) augmented views of every image are computed once per teacher and input set, kept
on disk, and each epoch every image shows one of its views (distill.cached_views; Shen & Xing 2022, FKD). The pool
rows and the 57,000-label rows share one input set (the 57,000 images in file order, labels hidden where a budget
has none), so one store serves them all. `--views 0`: the teacher's outputs on the plain images (distill.
cache_teacher), and no augmentation for distilled rows.

Targets, fixed before the full run:
- the founding story's cell (the 100k student, 1,000 labels, knowing teacher, pool): distilled >= alone + 10
  points, by more than 3 standard errors; >= 50% of the teacher-student gap closed; the student >= 10x faster than
  the teacher;
- at least one cell WITHOUT a pool where the distilled student beats the one alone by more than 3 standard errors.

Every finished teacher, search and row is kept under --out, so an interrupted run goes on where it stopped, and
several processes started together split the work between them (each claims a job with a lock file).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _protocol import (  # noqa: E402
    config_key,
    evaluate,
    mean_se,
    n_params,
    once_each,
    slug,
    train_configured,
    with_values,
    write_json,
)
from _results import write_section  # noqa: E402

from kdkit.data import make_loader  # noqa: E402
from kdkit.data.builtin import DataBundle  # noqa: E402
from kdkit.data.fashion_mnist import CLASS_NAMES, DEFAULT_ROOT, read_split, split_indices, stratified_pick  # noqa: E402
from kdkit.deploy.export import median_ms  # noqa: E402
from kdkit.io.checkpoint import load_weights, save_weights  # noqa: E402
from kdkit.labels import UNLABELLED  # noqa: E402
from kdkit.models import build_model  # noqa: E402
from kdkit.schemes import Supervised  # noqa: E402
from kdkit.trainer.loop import fit, predict, seed_everything  # noqa: E402
from kdkit.trainer.settings import TrainSettings  # noqa: E402

VAL_FRACTION = 0.05
BUDGETS = (1_000, 5_000, 57_000)
STUDENTS: dict[str, dict[str, Any]] = {
    "3k": {"name": "strided_cnn", "params": {"width": 2, "hidden": 14}},
    "30k": {"name": "strided_cnn", "params": {"width": 8, "hidden": 36}},
    "100k": {"name": "strided_cnn", "params": {"width": 16, "hidden": 64}},
}
TEACHER = {"name": "cnn2d", "params": {"width": 48, "depth": 3}}
AUGMENT = [{"name": "crop", "padding": 2}, {"name": "flip"}]  # the teachers', and the students' at most
BATCH = 256
TUNE_SEED = 100  # the searches' seed: none of the final seeds, so no final row replays a trial
KNOWING, SAME = "knowing", "same labels"
FOUNDING = ("100k", 1_000)  # the founding story's student and label budget

LRS = (2e-3, 5e-3)


def grid(*options: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every combination of one choice from each option list (choices: values by dotted config path)."""
    combos: list[dict[str, Any]] = [{}]
    for choices in options:
        combos = [{**c, **choice} for c in combos for choice in choices]
    return combos


LR_CHOICES = [{"distill.train.lr": lr} for lr in LRS]
ALONE_GRID = grid(LR_CHOICES, [{"distill.train.augment": a} for a in ([], AUGMENT[:1], AUGMENT)])


@dataclass(frozen=True)
class Method:
    """A distillation recipe: its loss terms and the grid its search tries (values by dotted config path)."""

    losses: list[dict[str, Any]]
    grid: list[dict[str, Any]]


CE = {"name": "ce"}
METHODS: dict[str, Method] = {
    "KD": Method([{"name": "kd", "T": 4.0, "alpha": 0.5}],
                 grid(LR_CHOICES, [{"distill.losses.0.T": t, "distill.losses.0.alpha": a}
                                   for t, a in ((1.0, 0.5), (4.0, 0.2), (4.0, 0.8))])),
    # beta 8 is the paper's CIFAR-100 value, 1 near its ImageNet one (0.5)
    "DKD": Method([CE, {"name": "dkd", "alpha": 1.0, "beta": 8.0, "T": 4.0, "warmup_epochs": 1}],
                  grid(LR_CHOICES, [{"distill.losses.1.T": t, "distill.losses.1.beta": b}
                                    for t, b in ((1.0, 1.0), (4.0, 1.0), (4.0, 8.0))])),
    # logit standardization (Sun et al. 2024): T is the base temperature of z-scored logits; the paper's CIFAR
    # recipe weighs CE 0.1 against KD 9, alpha about 0.01
    "KD + logit standardization": Method(
        [{"name": "kd", "T": 2.0, "alpha": 0.01, "standardize": True}],
        grid(LR_CHOICES, [{"distill.losses.0.T": t, "distill.losses.0.alpha": a}
                          for t, a in ((2.0, 0.01), (2.0, 0.2), (4.0, 0.2))])),
    # CTKD (Li et al. 2023): T is the learnt temperature's start; the authors weigh CE 0.1 against KD 0.9
    "CTKD": Method(
        [{"name": "kd", "T": 4.0, "alpha": 0.1, "curriculum_T": True}],
        grid(LR_CHOICES, [{"distill.losses.0.T": t, "distill.losses.0.alpha": a}
                          for t, a in ((1.0, 0.5), (4.0, 0.1), (4.0, 0.5))])),
}
MAP_METHOD = "KD"  # the distilled row of every cell


def unavailable(method: str) -> str | None:
    """Why this kdkit cannot run `method` (a loss option it does not have), or None."""
    from kdkit.errors import ConfigError
    from kdkit.terms import build_terms

    try:
        build_terms(copy.deepcopy(METHODS[method].losses))
    except ConfigError as err:
        return str(err)
    return None


@dataclass(frozen=True)
class Row:
    """One trained student: alone (teacher None) or distilled from a teacher, with or without the pool."""

    student: str
    labels: int
    teacher: str | None = None
    pool: bool = False
    method: str = MAP_METHOD

    @property
    def name(self) -> str:
        if self.teacher is None:
            return f"{self.student}, {self.labels:,} labels, alone"
        pool = "pool" if self.pool else "no pool"
        return f"{self.student}, {self.labels:,} labels, {self.teacher} teacher, {pool}, {self.method}"

    @property
    def alone(self) -> Row:
        return Row(self.student, self.labels)


@dataclass
class Scale:
    """How much of Fashion-MNIST a run uses: everything, or (--quick) a few hundred images."""

    full_size: int | None = None  # labelled-or-pool training images; None: all 57,000
    budgets: tuple[int, ...] = BUDGETS
    test_size: int | None = None


@dataclass
class Data:
    """The training file's images and labels, which of them the map uses, the labelled subsets, val and test."""

    x: torch.Tensor
    y: torch.Tensor
    full: np.ndarray  # the training images of the map (labelled or pool), in file order
    labelled: dict[int, np.ndarray]
    val: TensorDataset
    test: TensorDataset
    cache: dict[Any, Any] = field(default_factory=dict)

    def labelled_set(self, labels: int) -> TensorDataset:
        idx = torch.as_tensor(self.labelled[labels])
        return TensorDataset(self.x[idx], self.y[idx])

    def pooled_set(self, labels: int) -> TensorDataset:
        """All the map's training images in file order, labelled only where the budget has a label: the pool rows
        of every budget, and the all-labels rows, share these inputs and so one store of teacher outputs."""
        idx = torch.as_tensor(self.full)
        known = torch.as_tensor(np.isin(self.full, self.labelled[labels]))
        return TensorDataset(self.x[idx], torch.where(known, self.y[idx], UNLABELLED))

    def bundle(self, train: TensorDataset) -> DataBundle:
        return DataBundle(train=train, val=self.val, test=self.test, num_classes=len(CLASS_NAMES),
                          input_shape=(1, 28, 28), class_names=list(CLASS_NAMES))


def _tensors(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.astype(np.float32)).div_(255.0).unsqueeze(1)  # astype: a writable copy


def load_data(scale: Scale) -> Data:
    """Fashion-MNIST split by data seed 0 as `data: {name: fashion_mnist, val_fraction: 0.05}` splits it."""
    x_train, y_train = read_split(DEFAULT_ROOT, "train")
    x_test, y_test = read_split(DEFAULT_ROOT, "test")
    s = split_indices(y_train, y_test, seed=0, val_fraction=VAL_FRACTION, train_size=scale.full_size,
                      test_size=scale.test_size)

    def pick(labels: int) -> np.ndarray:
        if labels >= len(s.train):
            return s.train
        if scale.full_size is None:  # the images `data.train_size: labels` gives, so a config can reproduce a cell
            return split_indices(y_train, y_test, seed=0, val_fraction=VAL_FRACTION, train_size=labels).train
        return stratified_pick(s.train, y_train, labels, np.random.default_rng([0, labels]))[0]

    x, y = _tensors(x_train), torch.from_numpy(y_train.astype(np.int64))
    test = TensorDataset(_tensors(x_test[s.test]), torch.from_numpy(y_test[s.test].astype(np.int64)))
    val = TensorDataset(x[torch.as_tensor(s.val)], y[torch.as_tensor(s.val)])
    return Data(x, y, s.train, {b: pick(b) for b in scale.budgets}, val, test)


# ------------------------------------------------------------------------------------------------------ teachers


def teacher_epochs(kind: str, labels: int, data: Data, args: argparse.Namespace) -> int:
    """Epochs over the teacher's labelled set: the knowing teacher `--teacher-epochs` over all images, a
    same-labels teacher as many steps as `--same-teacher-epochs` epochs of the full set would take."""
    if kind == KNOWING:
        return args.teacher_epochs
    return args.same_teacher_epochs * max(1, round(len(data.full) / labels))


def teacher_file(kind: str, labels: int, data: Data, args: argparse.Namespace, out: Path) -> Path:
    n = len(data.full) if kind == KNOWING else labels
    settings = teacher_settings(teacher_epochs(kind, labels, data, args))
    key = config_key({"model": TEACHER, "settings": settings.model_dump(mode="json"), "labels": n,
                      "images": data.labelled[n][:50].tolist() if n in data.labelled else n})
    return out / "teachers" / f"{slug(kind)}-{n}-{key}.safetensors"


def teacher_settings(epochs: int) -> TrainSettings:
    return TrainSettings(epochs=epochs, batch_size=128, lr=3e-3, seed=0, keep="last", augment=AUGMENT,
                         progress=False)


def teacher_model(path: Path | None = None) -> torch.nn.Module:
    seed_everything(0)
    model = build_model(TEACHER["name"], (1, 28, 28), len(CLASS_NAMES), **TEACHER["params"])
    if path is not None:
        load_weights(model, path)
    return model.eval()


def teacher_job(kind: str, labels: int, data: Data, args, out: Path) -> tuple[Path, Callable[[], None]]:
    """(the teacher's file, the job that trains and saves it): trained on its labels with random crops and flips,
    no validation during training (many short epochs would pay for it), the last epoch kept."""
    path = teacher_file(kind, labels, data, args, out)
    n = len(data.full) if kind == KNOWING else labels

    def make() -> None:
        start, cpu = time.perf_counter(), time.process_time()
        model = teacher_model()
        settings = teacher_settings(teacher_epochs(kind, labels, data, args))
        fit(Supervised(model), make_loader(data.labelled_set(n), 128, shuffle=True, seed=0), None, settings,
            name=f"{kind} teacher")
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.safetensors")
        save_weights(model, tmp)
        tmp.replace(path)
        write_json(path.with_suffix(".json"), timing(start, cpu))
        print(f"{kind} teacher ({n:,} labels) trained in {time.perf_counter() - start:.0f} s", flush=True)

    return path, make


def timing(start: float, cpu: float) -> dict[str, float]:
    """Wall and CPU seconds since (start, cpu), and the wall-clock span, for the run's total wall time."""
    return {"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
            "ended": time.time(), "started": time.time() - (time.perf_counter() - start)}


def teacher_of(row: Row, data: Data, args, out: Path) -> Path:
    """The file of the teacher a row distils from (the knowing teacher for rows alone: their fidelity reference)."""
    kind = row.teacher or KNOWING
    return teacher_file(kind, row.labels, data, args, out)


class Teachers(dict):
    """Teachers by file, each loaded on first use: a job needs its teacher only when it runs, after the teachers'
    jobs, so rows alone can train while the teachers do."""

    def __missing__(self, path: Path) -> torch.nn.Module:
        if not path.exists():
            sys.exit(f"error: teacher file {path} is missing; run without --report-only first")
        self[path] = teacher_model(path)
        return self[path]


# ---------------------------------------------------------------------------------------------------- the rows


def map_rows(scale: Scale, students: list[str]) -> list[Row]:
    """Every row of the map, alone rows first within each cell group."""
    full = max(scale.budgets)
    rows = []
    for student in students:
        for labels in scale.budgets:
            rows.append(Row(student, labels))
            for pool in (True, False):
                if not (pool and labels == full):
                    rows.append(Row(student, labels, KNOWING, pool))
            if labels != full:
                rows += [Row(student, labels, SAME, pool) for pool in (True, False)]
    return rows


def method_rows(scale: Scale, methods: list[str]) -> list[Row]:
    """The other methods, in the founding story's two cells (with and without the pool)."""
    student, labels = FOUNDING[0], min(scale.budgets)
    return [Row(student, labels, KNOWING, pool, m) for m in methods if m != MAP_METHOD for pool in (True, False)]


def training_order(rows: list[Row]) -> list[Row]:
    """The founding story's cells first, so an interrupted run holds the rows the targets judge."""
    first = [r for r in rows if (r.student, r.labels) == (FOUNDING[0], min(x.labels for x in rows))]
    return first + [r for r in rows if r not in first]


def row_dataset(row: Row, data: Data) -> TensorDataset:
    if row.pool or row.labels == len(data.full):
        return data.pooled_set(row.labels)
    return data.labelled_set(row.labels)


def row_epochs(row: Row, data: Data, epochs: int) -> int:
    """`epochs` epochs of about len(data.full) samples: a small labelled set is repeated that many times more."""
    n = len(data.full) if row.pool else row.labels
    return epochs * max(1, round(len(data.full) / n))


def row_config(row: Row, epochs: int, data: Data, args, out: Path) -> dict[str, Any]:
    """The row's kdkit config (its data come from `row_dataset`, not from the data section)."""
    raw: dict[str, Any] = {
        "seed": 0, "output_dir": str(out / "configs"), "data": {"name": "fashion_mnist", "val_fraction": VAL_FRACTION},
        "train": {"epochs": row_epochs(row, data, epochs), "batch_size": BATCH, "lr": 3e-3, "keep": "last",
                  "progress": False},
        "teacher": copy.deepcopy(TEACHER),
        "student": copy.deepcopy(STUDENTS[row.student]),
    }
    if row.teacher is None:  # trained on the labels only: no teacher is loaded
        raw["distill"] = {"losses": [CE], "use_transfer": False, "cache_teacher": False,
                          "train": {"augment": copy.deepcopy(AUGMENT)}}
    else:
        raw["teacher"]["checkpoint"] = str(teacher_of(row, data, args, out))
        raw["distill"] = distill_section(METHODS[row.method], args.views, out)
        for loss in raw["distill"]["losses"]:
            if loss.get("curriculum_T"):  # CTKD's curriculum over the first tenth of training, as in its paper
                loss["curriculum_epochs"] = max(1, raw["train"]["epochs"] // 10)
    return raw


def distill_section(method: Method, views: int, out: Path) -> dict[str, Any]:
    """Where cached views plug in: without them, the teacher's outputs on the un-augmented images, cached; with
    them, its stored answers to `views` augmented views per image, and the students' augmentation."""
    section: dict[str, Any] = {"losses": copy.deepcopy(method.losses), "use_transfer": False,
                               "cache_dir": str(out / "teacher_outputs")}
    if views:
        return {**section, "cache_teacher": False, "cached_views": views, "train": {"augment": copy.deepcopy(AUGMENT)}}
    return {**section, "cache_teacher": True, "train": {"augment": []}}


def grid_of(row: Row) -> list[dict[str, Any]]:
    return ALONE_GRID if row.teacher is None else METHODS[row.method].grid


def new_student(row: Row, seed: int) -> torch.nn.Module:
    seed_everything(10_000 + seed)  # every row of a student and seed starts from these weights
    spec = STUDENTS[row.student]
    return build_model(spec["name"], (1, 28, 28), len(CLASS_NAMES), **spec["params"])


def train_row(row: Row, raw: dict[str, Any], seed: int, data: Data, teachers: Teachers):
    """The row's student after training with config `raw` and `seed`: the path of a `kdkit tune` trial, with this
    row's data. No validation during training: every row keeps its last epoch."""
    # the teacher first: loading one the first time seeds the global generator, which must not follow the student's
    teacher = teachers[Path(raw["teacher"]["checkpoint"])] if row.teacher is not None else None
    model = new_student(row, seed)
    train_configured(raw, seed, data.bundle(row_dataset(row, data)), model, teacher, None, alone=row.teacher is None)
    return model


# ---------------------------------------------------------------------------------------------------- tuning


def search_job(row: Row, data: Data, args, out: Path, teachers) -> tuple[Path, Callable[[], None]]:
    """(the file of the row's best values, the job that finds them): every setting of the row's grid, each a
    `--tune-epochs` run with the tuning seed, scored by validation accuracy (the first best one kept)."""
    base = row_config(row, args.tune_epochs, data, args, out)
    candidates = grid_of(row)[:2] if args.quick else grid_of(row)  # --quick: the first 2 settings only
    path = out / "tuned" / f"{slug(row.name)}-{config_key({'raw': base, 'grid': candidates})}.json"

    def make() -> None:
        start, cpu = time.perf_counter(), time.process_time()
        val = make_loader(data.val, 1024, shuffle=False)
        trials = []
        for values in candidates:
            model = train_row(row, with_values(base, values), TUNE_SEED, data, teachers)
            trials.append({"values": values, "val_accuracy": evaluate(model, val, None)["accuracy"]})
        best = max(trials, key=lambda t: t["val_accuracy"])
        write_json(path, {**best, "trials": trials, **timing(start, cpu)})
        print(f"tuned {row.name}: {best['val_accuracy']:.4f} {best['values']} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)

    return path, make


# ---------------------------------------------------------------------------------------------------- final rows


def row_job(row: Row, seed: int, values: dict[str, Any], data: Data, args, out: Path,
            teachers) -> tuple[Path, Callable[[], None]]:
    """(the row's result file for this seed, the job that trains and evaluates it). The file name holds a key of
    the row's config, so a changed setting trains the row again instead of reading a stale result."""
    raw = with_values(row_config(row, args.epochs, data, args, out), values)
    path = out / "rows" / f"seed{seed}" / f"{slug(row.name)}-{config_key(raw)}.json"

    def make() -> None:
        start, cpu = time.perf_counter(), time.process_time()
        model = train_row(row, raw, seed, data, teachers)
        logits, labels = predict(model, make_loader(data.test, 1024, shuffle=False), torch.device("cpu"))
        val = evaluate(model, make_loader(data.val, 1024, shuffle=False), None)["accuracy"]
        save_weights(model, path.with_suffix(".safetensors"))  # kept for the diagnosis signals of the cell
        write_json(path, {"row": row.name, "seed": seed, "values": values, "val_accuracy": val,
                          "accuracy": float((logits.argmax(1) == labels).mean()),
                          "predictions": logits.argmax(1).tolist(), **timing(start, cpu)})
        print(f"  seed {seed} {row.name}: accuracy {(logits.argmax(1) == labels).mean():.4f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)

    return path, make


def run(args: argparse.Namespace, data: Data, rows: list[Row], out: Path) -> tuple[dict, dict, dict]:
    """Teachers, searches and rows, each made once across the processes sharing `out`; returns the rows' results
    by (row name, seed), the teachers by file and the searches' results by row."""
    kinds = [(KNOWING, len(data.full))] + [(SAME, b) for b in sorted({r.labels for r in rows if r.teacher == SAME})]
    teachers = Teachers()
    searches = {r: search_job(r, data, args, out, teachers) for r in training_order(rows)}
    if not args.report_only:  # the students alone need no teacher: their searches run beside the teachers' training
        once_each([teacher_job(kind, labels, data, args, out) for kind, labels in kinds]
                  + [job for r, job in searches.items() if r.teacher is None])
        once_each([job for r, job in searches.items() if r.teacher is not None])
    tuned = {r: json.loads(p.read_text()) for r, (p, _) in searches.items() if p.exists()}
    jobs = {(r, s): row_job(r, s, tuned[r]["values"], data, args, out, teachers)
            for s in args.seeds for r in training_order(rows) if r in tuned}
    if not args.report_only:
        once_each([jobs[(r, s)] for r in training_order(rows) for s in args.seeds if (r, s) in jobs])
    results = {(r.name, s): json.loads(p.read_text()) for (r, s), (p, _) in jobs.items() if p.exists()}
    return results, teachers, tuned


# ---------------------------------------------------------------------------------------------------- report


def latencies(teacher: torch.nn.Module, students: list[str], rounds: int = 7) -> dict[str, float]:
    """Median batch-64 latency (ms) of the teacher and every student on one thread, in interleaved rounds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    x = torch.rand(64, 1, 28, 28)
    models = {"teacher": teacher.eval(), **{s: new_student(Row(s, 0), 0).eval() for s in students}}
    times: dict[str, list[float]] = {k: [] for k in models}
    with torch.no_grad():
        for _ in range(rounds):
            for role, model in models.items():
                times[role].append(median_ms(lambda m=model: m(x), repeats=10))
    torch.set_num_threads(threads)
    return {k: statistics.median(v) for k, v in times.items()}


@dataclass
class CellStats:
    alone: float
    distilled: float
    delta: float
    se: float
    seeds: int
    gap_closed: float | None
    agreement_alone: float
    agreement_distilled: float
    teacher: float


def cell_stats(row: Row, results: dict, teacher_predictions: dict[str, np.ndarray], labels: np.ndarray,
               seeds: list[int]) -> CellStats | None:
    """Paired statistics of a distilled row against its student alone, over the seeds that have both."""
    have = [s for s in seeds if (row.name, s) in results and (row.alone.name, s) in results]
    if not have:
        return None
    teacher_pred = teacher_predictions[row.teacher if row.teacher == KNOWING else f"{SAME} {row.labels}"]
    teacher_acc = float((teacher_pred == labels).mean())
    acc = {k: [results[(name, s)]["accuracy"] for s in have] for k, name in (("a", row.alone.name), ("d", row.name))}
    delta, se = mean_se([100 * (d - a) for a, d in zip(acc["a"], acc["d"], strict=True)])
    gaps = [(d - a) / (teacher_acc - a) for a, d in zip(acc["a"], acc["d"], strict=True) if teacher_acc > a]
    agree = {k: statistics.mean(float((np.asarray(results[(name, s)]["predictions"]) == teacher_pred).mean())
                                for s in have) for k, name in (("a", row.alone.name), ("d", row.name))}
    return CellStats(statistics.mean(acc["a"]), statistics.mean(acc["d"]), delta, se, len(have),
                     statistics.mean(gaps) if len(gaps) == len(have) else None, agree["a"], agree["d"], teacher_acc)


def cell_table(rows: list[Row], stats: dict[Row, CellStats], speedup: dict[str, float]) -> str:
    lines = ["| student | labels | teacher (test acc.) | unlabelled pool | method | alone | distilled | "
             "paired Δ (points ± s.e.) | gap closed | agreement with the teacher: alone → distilled | "
             "faster than the teacher |", "|---" * 11 + "|"]
    for row in rows:
        st = stats.get(row)
        if st is None:
            continue
        gap = f"{st.gap_closed:.2f}" if st.gap_closed is not None else "n/a (teacher not above alone)"
        seeds = "" if st.seeds == stats_seeds(stats) else f" ({st.seeds} seeds)"
        lines.append(
            f"| {row.student} | {row.labels:,} | {row.teacher} ({st.teacher:.4f}) | "
            f"{'yes' if row.pool else 'no'} | {row.method} | {st.alone:.4f} | {st.distilled:.4f} | "
            f"**{st.delta:+.2f} ± {st.se:.2f}**{seeds} | {gap} | {st.agreement_alone:.3f} → "
            f"{st.agreement_distilled:.3f} | {speedup[row.student]:.0f}x |")
    return "\n".join(lines)


def stats_seeds(stats: dict[Row, CellStats]) -> int:
    return max((s.seeds for s in stats.values()), default=0)


def targets(stats: dict[Row, CellStats], speedup: dict[str, float], labels: int) -> str:
    """The targets fixed before the run, judged on test."""
    verdict = lambda ok: "**hit**" if ok else "**missed**"  # noqa: E731
    founding = stats.get(Row(FOUNDING[0], labels, KNOWING, True))
    lines = ["Targets (fixed before the run):"]
    if founding is None:
        lines.append("- the founding story's cell: not measured (its rows are missing)")
    else:
        gap = founding.gap_closed if founding.gap_closed is not None else float("nan")
        lines += [
            f"- founding story's cell (100k student, {labels:,} labels, knowing teacher, pool): "
            f"Δ {founding.delta:+.2f} ± {founding.se:.2f} points, >= +10 and beyond 3 s.e.: "
            f"{verdict(founding.delta >= 10 and founding.delta > 3 * founding.se)}",
            f"- gap closed {gap:.2f}, >= 0.50: {verdict(gap >= 0.5)}",
            f"- the 100k student {speedup[FOUNDING[0]]:.1f}x faster than the teacher, >= 10x: "
            f"{verdict(speedup[FOUNDING[0]] >= 10)}",
        ]
    no_pool = [(r, s) for r, s in stats.items() if not r.pool and s.seeds > 1 and s.delta > 3 * s.se]
    named = ", ".join(f"{r.student}/{r.labels:,}/{r.teacher}/{r.method} ({s.delta:+.2f} ± {s.se:.2f})"
                      for r, s in no_pool) or "none"
    lines.append(f"- a cell without a pool beating alone by more than 3 s.e.: {verdict(bool(no_pool))} ({named})")
    return "\n".join(lines)


PANELS = [(KNOWING, True), (KNOWING, False), (SAME, True), (SAME, False)]


def compact_table(stats: dict[Row, CellStats], students: list[str], budgets: tuple[int, ...]) -> str:
    """The heat map as text (the README's table): paired Δ ± s.e. in points, one column per teacher and pool."""
    head = "| student | labels | alone | " + " | ".join(
        f"{t} teacher, {'pool' if p else 'no pool'}" for t, p in PANELS) + " |"
    lines = [head, "|---" * (3 + len(PANELS)) + "|"]
    for student in students:
        for labels in budgets:
            cells = [stats.get(Row(student, labels, t, p)) for t, p in PANELS]
            alone = next((c.alone for c in cells if c is not None), None)
            if alone is None:
                continue
            shown_cells = [f"{c.delta:+.1f} ± {c.se:.1f}" if c is not None else "-" for c in cells]
            lines.append(f"| {student} | {labels:,} | {alone:.3f} | " + " | ".join(shown_cells) + " |")
    return "\n".join(lines)


def heat_map(stats: dict[Row, CellStats], students: list[str], budgets: tuple[int, ...], path: Path) -> None:
    """Paired Δ (points) per cell: one panel per teacher and pool, students down, label budgets across."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    deltas = [s.delta for r, s in stats.items() if r.method == MAP_METHOD]
    bound = max([abs(d) for d in deltas] + [1.0])
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 3.6), sharey=True)
    for ax, (teacher, pool) in zip(axes, PANELS, strict=True):
        grid = np.full((len(students), len(budgets)), np.nan)
        for i, student in enumerate(students):
            for j, labels in enumerate(budgets):
                st = stats.get(Row(student, labels, teacher, pool))
                if st is None:
                    ax.text(j, i, "n/a", ha="center", va="center", color="grey", fontsize=9)
                    continue
                grid[i, j] = st.delta
                colour = "white" if abs(st.delta) > 0.6 * bound else "black"  # readable on the darkest cells
                ax.text(j, i, f"{st.delta:+.1f}\n± {st.se:.1f}", ha="center", va="center", fontsize=9, color=colour)
        image = ax.imshow(grid, cmap="RdBu", vmin=-bound, vmax=bound)
        ax.set_xticks(range(len(budgets)), [f"{b:,}" for b in budgets])
        ax.set_yticks(range(len(students)), students)
        ax.set_xlabel("labelled images")
        ax.set_title(f"{teacher} teacher, {'pool' if pool else 'no pool'}", fontsize=10)
    axes[0].set_ylabel("student (parameters)")
    fig.colorbar(image, ax=list(axes), label="distilled - alone (test accuracy points)", shrink=0.8)
    fig.suptitle("KD vs the same student trained alone, Fashion-MNIST (mean of paired seeds)", fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def shown(path: str, value: Any) -> str:
    """A tuned value as the tables show it: `lr 0.002`, `augment crop+flip`, `T 4`."""
    name = path.rsplit(".", 1)[-1]
    if name == "augment":
        return "augment " + ("+".join(op["name"] for op in value) or "none")
    return f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"


def tuned_table(rows: list[Row], tuned: dict[Row, dict]) -> str:
    """The values each row's search chose, with its best validation accuracy (short runs)."""
    lines = ["| row | tuned values | validation accuracy (short run) |", "|---|---|---|"]
    for row in rows:
        if row in tuned:
            values = ", ".join(shown(k, v) for k, v in tuned[row]["values"].items())
            lines.append(f"| {row.name} | {values} | {tuned[row]['val_accuracy']:.4f} |")
    return "\n".join(lines)


def run_time(records: list[dict[str, Any]]) -> tuple[float, float]:
    """(wall seconds from the first job's start to the last job's end, CPU seconds of all jobs) over the teachers,
    searches and rows a report reads."""
    records = [r for r in records if "started" in r]
    if not records:
        return 0.0, 0.0
    return (max(r["ended"] for r in records) - min(r["started"] for r in records),
            sum(r["cpu_seconds"] for r in records))


def report(args, data: Data, rows: list[Row], results, teachers, tuned, out: Path) -> str:
    labels = np.asarray(data.test.tensors[1])
    test = make_loader(data.test, 1024, shuffle=False)
    kinds = {KNOWING: teacher_of(Row("100k", 0, KNOWING), data, args, out),
             **{f"{SAME} {b}": teacher_of(Row("100k", b, SAME), data, args, out)
                for b in sorted({r.labels for r in rows if r.teacher == SAME})}}
    teacher_pred = {k: predict(teachers[p], test, torch.device("cpu"))[0].argmax(1) for k, p in kinds.items()}
    stats = {r: st for r in rows if r.teacher is not None
             and (st := cell_stats(r, results, teacher_pred, labels, args.seeds)) is not None}
    students = list(dict.fromkeys(r.student for r in rows))
    rounds = 2 if args.quick else 7
    ms = latencies(teachers[kinds[KNOWING]], students, rounds)
    speedup = {s: ms["teacher"] / ms[s] for s in students}
    teacher_runs = [json.loads(p.with_suffix(".json").read_text()) for p in set(kinds.values())
                    if p.with_suffix(".json").exists()]
    wall, cpu = run_time([*results.values(), *tuned.values(), *teacher_runs])
    sizes = {s: n_params(new_student(Row(s, 0), 0)) for s in students}
    teacher_acc = ", ".join(f"{k} {float((v == labels).mean()):.4f}" for k, v in teacher_pred.items())
    map_rows_ = [r for r in rows if r.method == MAP_METHOD]
    method_rows_ = [r for r in rows if r.method != MAP_METHOD or (r.student, r.labels) == (FOUNDING[0], min(
        data.labelled)) and r.teacher == KNOWING]
    image = args.heat_map
    if args.quick or not args.print_only:  # the training processes leave docs/ to the run that writes the section
        heat_map(stats, students, tuple(sorted(data.labelled)), image)
    return "\n".join([
        f"Fashion-MNIST: {len(data.full):,} training images (labelled or pool), {len(data.val):,} validation, "
        f"{len(data.test):,} test. Teacher `{TEACHER['name']}` {TEACHER['params']} "
        f"({n_params(teachers[kinds[KNOWING]]):,} parameters) with random crops and flips; test accuracy: "
        f"{teacher_acc} (the number after 'same labels' is its label budget). Students `strided_cnn`: "
        + ", ".join(f"{s} = {STUDENTS[s]['params']} ({sizes[s]:,} parameters, {ms[s]:.2f} ms, "
                    f"{speedup[s]:.0f}x faster than the teacher's {ms['teacher']:.1f} ms)" for s in students)
        + f" at batch 64 on one thread (median of {rounds} interleaved rounds).",
        "",
        f"Protocol (see the script's docstring): every row {args.epochs} epochs of about {len(data.full):,} samples "
        f"(batch {BATCH}, AdamW, cosine, the last epoch kept), the same tuning budget for every row (the 6 settings "
        f"of its grid, runs of {args.tune_epochs} epochs, validation accuracy; the student alone: lr x augmentation, "
        f"KD: lr x (T, alpha)), seeds {args.seeds} paired (same initial weights and batch order within a "
        f"student and seed); the teachers are trained once (knowing: {args.teacher_epochs} epochs on all labels; "
        f"same labels: as many steps as {args.same_teacher_epochs} such epochs) and shared by the seeds. "
        + (f"Distilled rows: the teacher's stored answers to {args.views} views per image augmented with crops "
           "and flips, one view per image and epoch."
           if args.views else "Distilled rows: the teacher's outputs on the un-augmented images (cached), no "
           "augmentation; the student alone may choose crops and flips.")
        + f" The run took {wall / 3600:.2f} h of wall time and {cpu / 3600:.2f} h of CPU time in all (teachers, "
        "searches, rows).",
        "",
        f"![paired Δ per cell](../{image.as_posix()})" if not args.quick else "",
        "",
        cell_table(map_rows_, stats, speedup),
        "",
        "The same as the heat map (paired Δ, points ± s.e.; the README's table):",
        "",
        compact_table(stats, students, tuple(sorted(data.labelled))),
        "",
        targets(stats, speedup, min(data.labelled)),
        "",
        "Methods in the founding story's cells (each tuned with the same budget):" if len(method_rows_) > 2 else "",
        "",
        cell_table(method_rows_, stats, speedup) if len(method_rows_) > 2 else "",
        "",
        tuned_table(rows, tuned),
    ])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10, help="epochs of about 57,000 samples per row")
    parser.add_argument("--tune-epochs", type=int, default=2, help="the same, per tuning trial")
    parser.add_argument("--teacher-epochs", type=int, default=15)
    parser.add_argument("--same-teacher-epochs", type=int, default=5)
    parser.add_argument("--views", type=int, default=8, help="cached augmented views per image for distilled rows "
                        "(0: the teacher's outputs on the plain images, no augmentation)")
    parser.add_argument("--methods", nargs="*", choices=[m for m in METHODS if m != MAP_METHOD],
                        help="methods beside KD, run in the founding story's two cells (default: every one this "
                        "kdkit has; none when given no names: the map's cells only)")
    parser.add_argument("--students", nargs="+", default=list(STUDENTS), choices=list(STUDENTS))
    parser.add_argument("--out", default="runs/bench_kd_regimes")
    parser.add_argument("--heat-map", type=Path, default=Path("docs/kd_regimes.png"))
    parser.add_argument("--workers", type=int, default=2, help="with --report-only: how many training processes "
                        "ran side by side (for the command the section records)")
    parser.add_argument("--quick", action="store_true", help="tiny slices, 1 seed, 2 settings per grid, nothing "
                        "written")
    parser.add_argument("--founding-only", action="store_true", help="train only the founding cell's student alone "
                        "and its KD rows with the knowing teacher (with and without the pool)")
    parser.add_argument("--same-labels-pool", action="store_true", help="with --founding-only: also the row "
                        "distilled from the same-labels teacher with the pool (the control)")
    parser.add_argument("--print-only", action="store_true", help="do not write bench/RESULTS.md")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: the section from what the training processes saved in --out")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.tune_epochs = [0], 1, 1
        args.teacher_epochs, args.same_teacher_epochs = 1, 1
        args.out = str(Path(args.out) / "quick")  # its own folder: its files must never stand in for a full run's
        args.heat_map = Path(args.out) / "kd_regimes.png"
    return args


def check_views(views: int) -> None:
    """--views needs a kdkit whose configs take distill.cached_views: one line and exit 2 otherwise."""
    from kdkit.families.classification.config import DistillConfig

    if views and "cached_views" not in DistillConfig.model_fields:
        print("error: --views needs distill.cached_views, which this kdkit does not have; use --views 0",
              file=sys.stderr)
        sys.exit(2)


def check_methods(args: argparse.Namespace) -> None:
    """--methods: the ones asked for, each of which this kdkit must have (one line and exit 2 otherwise); by
    default every method this kdkit has, the others named in one line."""
    if args.methods is None:
        args.methods = [m for m in METHODS if m != MAP_METHOD and unavailable(m) is None]
        skipped = [m for m in METHODS if m != MAP_METHOD and m not in args.methods]
        if skipped:
            print(f"methods this kdkit lacks, left out: {', '.join(skipped)}", flush=True)
        return
    for method in args.methods:
        if (why := unavailable(method)) is not None:
            print(f"error: --methods {method}: {why}", file=sys.stderr)
            sys.exit(2)


def main() -> None:
    args = parse_args()
    check_views(args.views)
    check_methods(args)
    scale = Scale(1_200, (100, 400, 1_200), 500) if args.quick else Scale()
    out = Path(args.out)
    for folder in ("teachers", "tuned", *(f"rows/seed{s}" for s in args.seeds)):
        (out / folder).mkdir(parents=True, exist_ok=True)
    data = load_data(scale)
    rows = map_rows(scale, args.students)
    if FOUNDING[0] in args.students:
        rows += method_rows(scale, args.methods)
    if args.founding_only:  # a short session's priority; a later run without it trains the rest, reusing these
        rows = [r for r in rows if (r.student, r.labels) == (FOUNDING[0], min(scale.budgets))
                and r.teacher in (None, KNOWING, *([SAME] if args.same_labels_pool else []))
                and (r.teacher != SAME or r.pool) and r.method == MAP_METHOD]
    results, teachers, tuned = run(args, data, rows, out)
    body = report(args, data, rows, results, teachers, tuned, out)
    print(body)
    if not (args.quick or args.print_only):
        options = " ".join(a for a in sys.argv[1:] if a != "--report-only")
        options = options.replace(f"--workers {args.workers}", "").strip()
        command = f"OMP_NUM_THREADS=1 python bench/kd_regimes.py {options}".strip()
        if args.report_only:  # the training ran in --workers processes side by side
            command = (f"for w in {' '.join(map(str, range(1, args.workers + 1)))}; do {command} --print-only & done; "
                       f"wait; {command} --report-only")
        write_section("kd_regimes", body, command)


if __name__ == "__main__":
    main()
