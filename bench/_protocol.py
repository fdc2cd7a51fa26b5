"""The fair-comparison protocol that bench/fashion_mnist.py, bench/methods.py and bench/schemes.py share.

Why one module: a comparison is only fair when every script tunes, pairs and reports the same way, and a rule that
lives in three copies drifts. What is shared here:
- tuning: `kdkit tune` on the validation split, quietly, with a fixed trial budget (`tune_quietly`);
- doing a costly step once even when several processes share an output folder (`once_each`: a teacher, a search),
  so a long benchmark can run as one single-thread process per seed side by side;
- the per-seed cache of finished rows (`run_rows`), which makes a run resumable and `--report-only` possible;
- paired statistics and the table of paired differences with their standard error (`paired_diffs`, `table`); the
  verdict per row is kdkit's own verdict over seeds (`verdict`: kdkit.verdict.seeds_verdict), never a rule of its own;
- for benchmarks whose rows are kdkit configs (methods.py, schemes.py): the equal-budget search (`tune_rows`) and
  the paired training of every row through the code path of a `kdkit tune` trial (`run_paired_seed`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import mean_std  # noqa: E402

from kdkit.data.loaders import EVAL_BATCH_SIZE  # noqa: E402
from kdkit.families.classification.config import parse_config  # noqa: E402
from kdkit.families.classification.tune import tune  # noqa: E402
from kdkit.measure import metrics  # noqa: E402
from kdkit.schemes.registry import DEFAULT_ALPHA_RANGE, DEFAULT_T_RANGE  # noqa: E402
from kdkit.trainer.loop import predict  # noqa: E402
from kdkit.verdict import ACCURACY, GAIN, LEVEL, LOSS, NONE, seeds_interval, seeds_verdict  # noqa: E402

COLUMNS = ["accuracy", "macro_f1", "nll", "ece", "agreement", "predictive_kl"]


# kdkit tune's default ranges of KD's temperature and label weight (one owner: kdkit.schemes.registry)
T_RANGE = dict(DEFAULT_T_RANGE)
ALPHA_RANGE = dict(DEFAULT_ALPHA_RANGE)


def log_range(low: float, high: float) -> dict[str, Any]:
    """A `kdkit tune` search range sampled on a log scale (weights and temperatures span decades)."""
    return {"low": low, "high": high, "log": True}


def slug(name: str) -> str:
    """A row name as a file or folder name."""
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def tune_quietly(name: str, raw: dict[str, Any]) -> dict[str, Any]:
    """`kdkit tune` on the config `raw` (its tune section sets the budget and space), without its tables; returns
    the best values by dotted path and prints how long the search took."""
    start, cpu = time.perf_counter(), time.process_time()
    best = tune(parse_config(raw), console=Console(quiet=True))
    print(f"tuned {name} in {time.perf_counter() - start:.0f} s ({time.process_time() - cpu:.0f} CPU s): {best}",
          flush=True)
    return best


def fresh_tune(name: str, raw: dict[str, Any]) -> dict[str, Any]:
    """Like tune_quietly, but an earlier, interrupted search in the same folder is discarded first: kdkit tune would
    add this budget to its trials, and every row must get exactly the same number."""
    shutil.rmtree(Path(raw["output_dir"]) / "tune", ignore_errors=True)
    return tune_quietly(name, raw)


def evaluate(model: torch.nn.Module, loader, teacher_logits: torch.Tensor | None) -> dict[str, float]:
    """Test metrics of `model`; fidelity to the teacher too when its logits on the same loader are given."""
    logits, labels = predict(model, loader, torch.device("cpu"))
    return metrics.classification_report(logits, labels, teacher_logits)


def write_json(path: Path, data: Any) -> None:
    """Write `data` so that a reader in another process never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def _claim(lock: Path) -> bool:
    """Take `lock` (a file holding the owner's pid); a lock whose owner has died is taken over."""
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            os.kill(int(lock.read_text()), 0)
            return False
        except ProcessLookupError:  # left by a process that crashed: retry
            lock.unlink(missing_ok=True)
            return _claim(lock)
        except (ValueError, OSError):  # being written right now, or gone: someone else has it
            return False
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return True


def once_each(jobs: Sequence[tuple[Path, Callable[[], None]]], poll_s: float = 5.0) -> None:
    """Run each job `make` whose `path` does not exist yet, once across every process that shares the folder.

    A process claims a job with `path`.lock, makes it (make must write `path` itself, whole or not at all), and
    moves on to jobs nobody has claimed; it then waits for the ones other processes are making. So N processes
    started together split the jobs between them instead of repeating them.
    """
    pending = list(jobs)
    while pending:
        waiting = []
        for path, make in pending:
            if path.exists():
                continue
            lock = path.with_name(path.name + ".lock")
            if not _claim(lock):
                waiting.append((path, make))
                continue
            try:
                if not path.exists():
                    make()
            finally:
                lock.unlink(missing_ok=True)
        pending = waiting
        if pending:
            time.sleep(poll_s)


def run_rows(saved: Path, seed: int, rows: Sequence[str], train: Callable[[str], dict[str, Any]],
             fixed: dict[str, Any], report_only: bool, keys: dict[str, str] | None = None) -> dict[str, Any]:
    """Every row of one seed: `train(row)` returns its test metrics (plus anything worth keeping); finished rows
    are kept in `saved` after each row, so a rerun trains only what is missing and --report-only trains nothing.
    `fixed` (e.g. the teacher's metrics) is recomputed every time and stored with the rows. `keys`: row -> a key of
    its settings, stored with it; a saved row whose key differs (its config changed since) is trained again."""
    results = json.loads(saved.read_text()) if saved.exists() else {}
    results.update(fixed)
    keys = keys or {}
    for row in rows:
        if report_only or row in results and results[row].get("key") == keys.get(row):
            continue
        start, cpu = time.perf_counter(), time.process_time()
        results[row] = train(row)
        if row in keys:
            results[row]["key"] = keys[row]
        # CPU seconds as well: on a shared machine they, not the wall time, estimate a run on free cores
        results[row].update(seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - cpu)
        write_json(saved, results)
        print(f"  seed {seed} {row}: accuracy {results[row]['accuracy']:.4f} "
              f"({results[row]['seconds']:.0f} s)", flush=True)
    return results


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for a single value)."""
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return statistics.mean(values), se


def paired_diffs(runs: Sequence[dict[str, Any]], row: str, ref: str, metric: str = "accuracy") -> list[float]:
    """Per-seed differences row - ref in points (x100), over the seeds that have both rows."""
    return [100 * (r[row][metric] - r[ref][metric]) for r in runs if row in r and ref in r]


def table(runs: Sequence[dict[str, Any]], rows: Sequence[str], reference: Callable[[str], str],
          compared: Callable[[str], bool], note: Callable[[str], str] = lambda ref: "",
          wins: bool = False) -> str:
    """Mean ± std of every metric per row; for the rows `compared` with their `reference` row, the paired accuracy
    difference (points ± standard error over seeds), the gap closed (row - ref) / (teacher - ref) and, with `wins`,
    in how many seeds the row beat its reference. A row that some seeds lack is marked with its seed count."""
    head = "| model | " + " | ".join(COLUMNS) + " | paired Δ accuracy vs alone (points ± s.e.) | gap closed |"
    lines = [head + (" better than alone in |" if wins else ""), "|---" * (len(COLUMNS) + 3 + wins) + "|"]
    for row in ["teacher", *rows]:
        have = [r for r in runs if row in r]  # a row an interrupted run did not reach in every seed
        if not have:
            continue
        cells = []
        for c in COLUMNS:
            values = [r[row][c] for r in have if r[row].get(c) is not None]
            cells.append(mean_std(values, ".4f") if values else "-")
        delta, gap, better = "-", "-", "-"
        if compared(row):
            ref = reference(row)
            diffs = paired_diffs(have, row, ref)
            mean, se = mean_se(diffs)
            delta = f"{mean:+.2f} ± {se:.2f}" + note(ref)
            closed = [(r[row]["accuracy"] - r[ref]["accuracy"]) / (r["teacher"]["accuracy"] - r[ref]["accuracy"])
                      for r in have]
            gap = f"{statistics.mean(closed):.2f}"
            better = f"{sum(d > 0 for d in diffs)}/{len(diffs)} seeds"
        seeds = "" if len(have) == len(runs) else f" ({len(have)} of {len(runs)} seeds)"
        lines.append(f"| {row}{seeds} | " + " | ".join(cells) + f" | {delta} | {gap} |" + (f" {better} |" if wins
                                                                                            else ""))
    return "\n".join(lines)


def power_note(runs: Sequence[dict[str, Any]], rows: Sequence[str], ref: str) -> str:
    """How large a paired effect these seeds can show: the largest standard error of a paired difference, and the
    half-width of its 95% interval (the verdict's t-interval, kdkit.verdict.seeds_interval), against the 1 point the
    benchmark is sized for."""
    spans = []
    for row in rows:
        diffs = paired_diffs(runs, row, ref, ACCURACY.key)
        if row != ref and len(diffs) > 1:
            mean, _, high, se = seeds_interval(diffs)
            spans.append((se, len(diffs), high - mean))
    if not spans:
        return "Paired differences need at least 2 seeds; none has a standard error."
    se, n, half = max(spans)
    visible = "visible" if half < 1.0 else "**not** reliably visible"
    return (f"Largest paired standard error {se:.2f} points over {n} seeds: the {LEVEL:.0%} interval of a paired "
            f"difference is ± {half:.2f} points at most, so a 1-point effect is {visible}.")


def report_command(script: str, argv: Sequence[str], seeds: Sequence[int], report_only: bool,
                   threads: int = 2, processes: int | None = None) -> str:
    """The command that reproduces a section. With --report-only, the training runs come first, side by side: one
    single-thread process per seed, or with `processes`, that many processes taking every `processes`-th seed (and
    the report's other options); then the report."""
    command = f"OMP_NUM_THREADS={threads} python bench/{script} " + " ".join(argv)
    if report_only and processes is None:
        values = " ".join(map(str, seeds))
        command = (f"for s in {values}; do OMP_NUM_THREADS=1 python bench/{script} --seeds $s --print-only & "
                   f"done; wait; {command}")
    elif report_only:
        options, skipping = [], False
        for token in argv:  # the report's options minus --report-only and its seed list
            skipping = token == "--seeds" or (skipping and not token.startswith("--"))
            if not skipping and token != "--report-only":
                options.append(token)
        groups = " ".join(f'"{" ".join(map(str, seeds[i::processes]))}"' for i in range(processes))
        command = (f"for s in {groups}; do OMP_NUM_THREADS=1 python bench/{script} --seeds $s "
                   + " ".join([*options, "--print-only"]) + f" & done; wait; {command}")
    return command.strip()


# --- benchmarks driven by kdkit configs (methods.py, schemes.py): each row is a config, tuned and trained alike ---

ALONE_SPACE = {"distill.train.lr": log_range(3e-4, 3e-2)}  # the student alone's own hyper-parameter


def base_config(data: dict[str, Any], teacher: dict[str, Any], student: dict[str, Any], epochs: int, lr: float,
                out: Path) -> dict[str, Any]:
    """The config every row shares: data split by seed 0, the saved teacher, the student, `epochs` epochs of AdamW
    at `lr` (cosine), batch 128, the last epoch kept (no epoch is picked on validation data)."""
    return {
        "seed": 0, "output_dir": str(out), "data": copy.deepcopy(data),
        "train": {"epochs": epochs, "batch_size": 128, "lr": lr, "keep": "last", "progress": False},
        "teacher": copy.deepcopy(teacher), "student": copy.deepcopy(student),
        "distill": {"losses": [{"name": "ce"}], "use_transfer": False, "cache_teacher": True},
    }


def with_values(raw: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of `raw` with tuned values at their dotted paths."""
    from kdkit.families.classification.tune import set_path

    changed = copy.deepcopy(raw)
    for path, value in values.items():
        set_path(changed, path, value)
    return changed


def config_key(raw: dict[str, Any]) -> str:
    """A short key of a config's content: cached results made with other settings are not reused."""
    return hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:12]


def tune_rows(base: dict[str, Any], rows: dict[str, dict[str, Any]], trials: int,
              tuned_dir: Path) -> tuple[float, dict[str, dict[str, Any]]]:
    """The equal-budget search: first the student alone's learning rate (CE only, `trials` trials), which every row
    then shares; then each row's own knobs (`rows[name]`: its "distill" section and "space"), `trials` trials each,
    all scored by validation accuracy. Results are kept as tuned_dir/<row>-<key of its search>.json, so a rerun of
    the same search reuses them and processes sharing tuned_dir split the searches between them."""
    tuned_dir.mkdir(parents=True, exist_ok=True)

    def search(name: str, raw: dict[str, Any], space: dict[str, Any]) -> tuple[Path, Callable[[], None]]:
        raw = {**raw, "tune": {"trials": trials, "metric": "accuracy", "space": space}}
        stem = f"{slug(name)}-{config_key(raw)}"
        raw["output_dir"] = str(tuned_dir / stem)
        path = tuned_dir / f"{stem}.json"
        return path, lambda: write_json(path, fresh_tune(name, raw))

    alone, make = search("student alone", base, ALONE_SPACE)
    once_each([(alone, make)])
    lr = json.loads(alone.read_text())["distill.train.lr"]
    shared = with_values(base, {"train.lr": lr})
    jobs = {name: search(name, {**shared, "distill": row["distill"]}, row["space"]) for name, row in rows.items()}
    once_each(list(jobs.values()))
    return lr, {name: json.loads(path.read_text()) for name, (path, _) in jobs.items()}


def train_configured(raw: dict[str, Any], seed: int, bundle, student: torch.nn.Module, teacher: torch.nn.Module,
                     val, alone: bool = False) -> None:
    """Train `student` (built by the caller, so every row of a seed starts from the same weights) as the config's
    scheme says, exactly as a `kdkit tune` trial does, but with `seed` for the batch order and any extra models
    (peers, assistants). The data split stays the one in `bundle` (seed 0). `alone`: on the labels only, with the
    config's settings (the student-alone row, the same batch order)."""
    from kdkit.data import make_loader
    from kdkit.families.classification.pipeline import distillation_set
    from kdkit.families.classification.plans import build_plan
    from kdkit.schemes import Supervised
    from kdkit.terms import build_terms
    from kdkit.trainer.loop import fit

    cfg = parse_config({**raw, "seed": seed})
    s = cfg.settings("distill")
    if alone:
        fit(Supervised(student, s.label_smoothing), make_loader(bundle.train, s.batch_size, shuffle=True, seed=seed),
            val, s, name="student alone")
        return
    plan = build_plan(cfg, bundle, student, teacher, build_terms(cfg.distill.losses))
    distill_set = distillation_set(cfg, bundle)
    plan.distill(distill_set, make_loader(distill_set, s.batch_size, shuffle=True, seed=seed), val, s, None)


def teacher_once(spec: dict[str, Any], bundle, settings, out: Path, init_seed: int = 0) -> Path:
    """Train a teacher-like model on the labels once and save it under `out` (its file name keys the spec and the
    settings); every later run, and every process sharing `out`, loads that file."""
    from kdkit.data import make_loader
    from kdkit.io.checkpoint import save_weights
    from kdkit.models import build_model
    from kdkit.schemes import Supervised
    from kdkit.trainer.loop import fit, seed_everything

    key = hashlib.sha256(json.dumps([spec, settings.model_dump(mode="json"), init_seed]).encode()).hexdigest()[:12]
    path = out / f"teacher-{key}.safetensors"

    def make() -> None:
        seed_everything(init_seed)
        model = build_model(spec["name"], bundle.input_shape, bundle.num_classes, **spec["params"])
        start = time.perf_counter()
        fit(Supervised(model), make_loader(bundle.train, settings.batch_size, shuffle=True, seed=settings.seed),
            make_loader(bundle.val, EVAL_BATCH_SIZE, shuffle=False), settings, name="teacher")
        print(f"teacher {spec['params']} (init seed {init_seed}) trained in {time.perf_counter() - start:.0f} s",
              flush=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.safetensors")
        save_weights(model, tmp)
        tmp.replace(path)

    out.mkdir(parents=True, exist_ok=True)
    once_each([(path, make)])
    return path


def load_model(spec: dict[str, Any], bundle, path: Path) -> torch.nn.Module:
    """A saved model, in eval mode."""
    from kdkit.io.checkpoint import load_weights
    from kdkit.models import build_model

    model = build_model(spec["name"], bundle.input_shape, bundle.num_classes, **spec["params"])
    load_weights(model, path)
    return model.eval()


ALONE = "student alone"


def run_paired_seed(seed: int, saved: Path, configs: dict[str, dict[str, Any]], student_spec: dict[str, Any],
                    bundle, teacher: torch.nn.Module, report_only: bool) -> dict[str, Any]:
    """Every row of one seed, paired: each starts from the same initial student (seed 10000 + seed) and sees the same
    batch order. `configs`: row name -> its config, tuned values applied (the ALONE row: the shared settings, trained
    on the labels only). Test metrics (fidelity against `teacher`) and the final validation accuracy, kept in
    `saved` row by row."""
    from kdkit.data import make_loader
    from kdkit.models import build_model
    from kdkit.trainer.loop import seed_everything

    test = make_loader(bundle.test, EVAL_BATCH_SIZE, shuffle=False)
    val = make_loader(bundle.val, EVAL_BATCH_SIZE, shuffle=False)
    teacher_logits, _ = predict(teacher, test, torch.device("cpu"))

    def train(row: str) -> dict[str, Any]:
        seed_everything(10_000 + seed)  # every row of a seed starts from these weights
        student = build_model(student_spec["name"], bundle.input_shape, bundle.num_classes, **student_spec["params"])
        train_configured(configs[row], seed, bundle, student, teacher, val, alone=row == ALONE)
        found = {**evaluate(student, test, teacher_logits), "val_accuracy": evaluate(student, val, None)["accuracy"]}
        if row == ALONE:  # what kdkit.diagnosis reads, known before any distilled row is measured
            found["signals"] = alone_signals(teacher, student, bundle)
        return found

    saved.parent.mkdir(parents=True, exist_ok=True)
    keys = {row: config_key(raw) for row, raw in configs.items()}
    return run_rows(saved, seed, list(configs), train, {"teacher": evaluate(teacher, test, None)}, report_only, keys)


def alone_signals(teacher: torch.nn.Module, alone: torch.nn.Module, bundle) -> dict[str, Any]:
    """kdkit.diagnosis's signals of a setting without a pool: the teacher and the student alone on the training
    split and on the validation split (held out); the student alone stands in for the distilled one, which the
    rules do not read."""
    from kdkit.data import make_loader
    from kdkit.diagnosis import Split, prediction_signals

    def split(dataset) -> Split:
        loader = make_loader(dataset, EVAL_BATCH_SIZE, shuffle=False)
        (t_logits, labels), (a_logits, _) = (predict(m, loader, torch.device("cpu")) for m in (teacher, alone))
        logits = {"teacher": t_logits, "student_alone": a_logits, "student_kd": a_logits}
        return Split(logits, labels)

    return prediction_signals("classification", "validation split", split(bundle.train), split(bundle.val),
                              n_train=len(bundle.train), n_pool=0,
                              capacity_ratio=n_params(teacher) / n_params(alone)).as_dict()


def verdict(runs: Sequence[dict[str, Any]], rows: Sequence[str], ref: str = ALONE) -> str:
    """Each row against `ref` by kdkit's verdict over seeds (kdkit.verdict.seeds_verdict: the 95% t-interval of the
    per-seed paired accuracy differences): gain, loss or no measurable difference, with the mean and interval in
    points. Rows with fewer than 2 seeds have no interval and are left out."""
    if len(runs) < 2:
        return "one seed: paired differences have no interval yet."
    by_kind: dict[str, list[str]] = {GAIN: [], LOSS: [], NONE: []}
    for row in rows:
        diffs = [d / 100 for d in paired_diffs(runs, row, ref, ACCURACY.key)]
        if len(diffs) < 2:
            continue
        found = seeds_verdict(diffs)
        by_kind[found.kind].append(f"{row} ({100 * found.difference:+.2f}, {100 * found.low:+.2f} to "
                                   f"{100 * found.high:+.2f})")
    named = {kind: ", ".join(names) or "none" for kind, names in by_kind.items()}
    return (f"verdict over seeds ({LEVEL:.0%} t-interval of the paired {ACCURACY.words} difference, points): gain "
            f"over the {ref}: {named[GAIN]}; loss: {named[LOSS]}; no measurable difference: {named[NONE]}.")


def n_params(model: torch.nn.Module) -> int:
    """The model's parameter count."""
    return sum(p.numel() for p in model.parameters())
