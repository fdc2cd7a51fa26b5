"""The main job from one config: train (or load) the teacher, train the student alone, distil the same student,
then measure all three on the test split and write a run directory:

    run_dir/config.yaml        the resolved config (re-runnable with `kdkit train`)
    run_dir/models/*.safetensors   teacher, student_alone, student_kd (final weights, no adapters); a teacher
                               loaded from teacher.checkpoint and left unchanged is referenced in models/meta.json
                               (path, size, SHA-256) instead of copied, unless copy_teacher
    run_dir/checkpoints/       best/last checkpoints of every stage (+ adapters as *.extras.safetensors)
    run_dir/metrics.jsonl      one line per epoch and stage
    run_dir/predictions.npz    logits of the three models on test and distillation data (+ labels)
    run_dir/results.json       the table's numbers;  run_dir/table.md  the table as Markdown
    run_dir/boundary.json      with distill.boundary: the boundary samples' statistics (see kdkit.data.boundary)
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn
from torch.utils.data import ConcatDataset, Dataset

from kdkit import distributed
from kdkit.adapters import example_inputs
from kdkit.data import DataBundle, Indexed, build_data, make_loader
from kdkit.data.boundary import TOKEN_IDS, BoundarySamples, boundary_samples
from kdkit.data.loaders import EVAL_BATCH_SIZE
from kdkit.diagnosis import Diagnosis, Split, capacity_ratio, diagnose, prediction_signals
from kdkit.errors import ConfigError, RunDirError
from kdkit.families.classification.config import RunConfig, dump_config
from kdkit.families.classification.meta import write_meta
from kdkit.families.classification.plans import build_plan, check_outputs, train_or_load
from kdkit.io.checkpoint import load_weights, save_weights, write_atomic
from kdkit.measure import cost, metrics
from kdkit.measure.spread import conditions_text
from kdkit.models import build_from_config, saved_run_sources
from kdkit.models.quantization import convert_quantized, prepare_qat
from kdkit.report.runinfo import previous_training, processes_note, show_next_steps, show_verdict, training_info
from kdkit.report.table import print_table, to_markdown
from kdkit.run import guard as run_guard
from kdkit.run.meta import file_reference, reference_line, references, teacher_reference, weights_file
from kdkit.run.rundir import CONFIG, EVALUATION_OUTPUTS, LABELS, MODELS, RESULTS_FORMAT, ROLES, TRAINING_OUTPUTS, RunDir
from kdkit.schemes import Supervised
from kdkit.schemes.registry import CLASSIFICATION, DEFAULT_SCHEME
from kdkit.trainer.batches import resolve_device
from kdkit.trainer.loop import fit, predict, seed_everything
from kdkit.trainer.resume import resuming
from kdkit.trainer.teacher_cache import describe as describe_cache
from kdkit.trainer.teacher_cache import tensors_digest
from kdkit.trainer.view_cache import ReplayedViews
from kdkit.verdict import run_verdict


@dataclass
class RunResult:
    run_dir: Path
    rows: list[dict[str, Any]]
    models: dict[str, nn.Module]


def build_models(cfg: RunConfig, bundle: DataBundle) -> dict[str, nn.Module]:
    """The three models, the two students from the same seed so they start from identical weights."""
    seed_everything(cfg.seed)
    teacher = build_from_config(cfg.teacher, bundle)
    return {"teacher": teacher, **{role: build_student(cfg, bundle) for role in ("student_alone", "student_kd")}}


def build_student(cfg: RunConfig, bundle: DataBundle) -> nn.Module:
    """The student from seed + 1 (both rows start from the same weights); quantization-aware when the config says
    so, as both rows then train with fake int8 and compare like with like."""
    seed_everything(cfg.seed + 1)
    student = build_from_config(cfg.student, bundle)
    if cfg.student.quantize is not None:
        student = prepare_qat(student, example_inputs(bundle.train, size=64), cfg.student.quantize)
    return student


def int8_roles(cfg: RunConfig) -> set[str]:
    """The roles measured as int8 models: both students when the config quantizes the student."""
    return {"student_alone", "student_kd"} if cfg.student.quantize is not None else set()


def distillation_data(cfg: RunConfig, bundle: DataBundle, augmented: bool = True):
    """Train (+ transfer) set; `augmented=False` gives the same images without random flips and shifts, so the
    fidelity measured on them is repeatable."""
    parts = [bundle.train] + ([bundle.transfer] if cfg.distill.use_transfer and bundle.transfer is not None else [])
    if not augmented:
        parts = [p.without_augmentation() if hasattr(p, "without_augmentation") else p for p in parts]
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


def check_boundary(cfg: RunConfig, bundle: DataBundle) -> None:
    """distill.boundary's refusals that need the data, so they come before anything trains."""
    spec = cfg.distill.boundary
    if spec is None:
        return
    if not example_inputs(bundle.train, size=1).is_floating_point():
        raise ConfigError(f"config error at distill.boundary: {TOKEN_IDS}; remove distill.boundary for this data")
    if spec.target == "second" and spec.num_samples > len(bundle.train):  # type: ignore[arg-type]
        raise ConfigError(f"config error at distill.boundary.num_samples: {spec.num_samples} exceeds the "
                          f"{len(bundle.train)} training inputs and target 'second' would repeat bases exactly; "
                          "lower it or set target: random")


def boundary_set(cfg: RunConfig, bundle: DataBundle, teacher: nn.Module) -> BoundarySamples | None:
    """distill.boundary's samples (None when off): made from the training inputs, without random augmentation, by
    the trained teacher (Heo et al. 2019), seeded by the distillation's seed."""
    spec = cfg.distill.boundary
    if spec is None:
        return None
    s = cfg.settings("distill")
    train = bundle.train.without_augmentation() if hasattr(bundle.train, "without_augmentation") else bundle.train
    return boundary_samples(teacher, train, spec.num_samples, steps=spec.steps, step_size=spec.step_size,
                            target=spec.target, margin_eps=spec.margin_eps, seed=s.seed,
                            device=resolve_device(s.device))


def distillation_set(cfg: RunConfig, bundle: DataBundle, boundary: Dataset | None = None) -> Dataset:
    """What the distilled student trains on, in `run` and `kdkit tune` alike: the distillation data plus the
    boundary samples, if any, wrapped in Indexed when the teacher's outputs are cached (boundary samples are fixed
    inputs, so caching the teacher's outputs on them is as valid as on the training inputs)."""
    data = distillation_data(cfg, bundle)
    if cfg.distill.cached_views is not None:  # augmented views whose teacher outputs the plan stores (FKD)
        s = cfg.settings("distill")
        return ReplayedViews(data, s.augment, cfg.distill.cached_views, cfg.distill.cached_top_k, seed=s.seed)
    if boundary is not None:
        data = ConcatDataset([data, boundary])
    return Indexed(data) if cfg.distill.cache_teacher else data


def run(cfg: RunConfig, console: Console | None = None, quick_cost: bool = False, resume: bool = False,
        overwrite: bool = False, copy_teacher: bool = False) -> RunResult:
    """Under torchrun every process trains (DDP); rank 0 alone writes the run directory, evaluates and prints the
    table, while the others wait for it and return a result without rows.

    A teacher loaded from `teacher.checkpoint` is not copied into the run: models/meta.json references the file
    (path, size, SHA-256), unless `copy_teacher`, or unless the run changed the teacher's weights.

    The run directory is locked while the run lasts and must not hold another run (see kdkit.run.guard):
    `resume` continues an interrupted run there from its checkpoints (finished stages are loaded, not redone),
    `overwrite` replaces whatever run it holds."""
    console = console or Console()
    distributed.init_from_env()
    main = distributed.is_main()
    # everything that can fail on bad input runs before the run directory is touched; what needs no data first
    run_dir = Path(cfg.output_dir)
    run_guard.precheck(run_dir, resume=resume, overwrite=overwrite)  # a finished or locked run: refused at once
    if resume:
        run_guard.check_same_config(run_dir, cfg.model_dump(mode="json"))
    bundle, models, loaded = _checked_models(cfg, console, main)
    # builds the scheme's other models (assistants, teachers, peers, generations) and checks module paths and, for
    # distill.init_from_teacher, that the student has the teacher's architecture, before any training
    plan = build_plan(cfg, bundle, models["student_kd"], models["teacher"], cfg.distill.loss_terms())
    lock = _claim(cfg, run_dir, [*models.values(), *plan.extra_models.values()], resume, overwrite) if main else None
    distributed.barrier()  # no process logs into the directory before rank 0 has cleared it
    with resuming(resume):  # every stage's fit continues from its checkpoint, or loads its final weights
        _train_rows(cfg, bundle, models, plan, run_dir, console, main)
    if not main:
        distributed.barrier()  # rank 0 is writing the run directory; every process returns once it is complete
        return RunResult(run_dir, [], models)
    refs = {} if copy_teacher else teacher_reference(tensors_digest(models["teacher"].state_dict()), loaded)
    _save_models(run_dir, {**models, **plan.extra_models}, refs, console)
    training = training_info(cfg)
    if plan.teacher_cache is not None:
        training["teacher_cache"] = plan.teacher_cache
    rows = evaluate_models(cfg, bundle, models, run_dir, quick_cost=quick_cost, training=training, console=console,
                           references=refs)
    scheme = "" if cfg.distill.scheme.name == DEFAULT_SCHEME[CLASSIFICATION] else f", scheme {cfg.distill.scheme.name}"
    print_table(rows, title=f"kdkit: {cfg.data.name} (test split{scheme}{processes_note(training)})", console=console,
                caption=cost_note(run_dir / TRAINING_OUTPUTS["results"]))
    show_verdict(run_dir, console)
    console.print(f"run directory: {run_dir}")
    show_next_steps(run_dir, rows, console)
    if lock is not None:
        lock.release()
    distributed.barrier()
    return RunResult(run_dir, rows, models)


def _checked_models(cfg: RunConfig, console: Console, main: bool) -> tuple[DataBundle, dict[str, nn.Module], Any]:
    """The data and the three models, the teacher loaded from its checkpoint if given, each model checked on a real
    input; with the loaded checkpoint's (reference, weights digest), or None."""
    bundle = build_data(cfg.data, cfg.seed)
    from kdkit.data.checks import batch_warnings, check_classes

    check_classes(bundle)  # one class only: refused before any model is built
    if main:
        for line in batch_warnings(cfg, bundle):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    models = build_models(cfg, bundle)
    teacher = models["teacher"]
    loaded = None  # (the checkpoint's reference, the teacher's weights digest once loaded)
    if cfg.teacher.checkpoint is not None:
        load_weights(teacher, cfg.teacher.checkpoint)
        loaded = (file_reference(cfg.teacher.checkpoint), tensors_digest(teacher.state_dict()))
        if main:
            console.print(f"teacher: loaded {cfg.teacher.checkpoint}")
    for role, model in models.items():  # one forward on a real input: wrong inputs fail before any training
        check_outputs(model, bundle, role.replace("_", " "))
    check_boundary(cfg, bundle)
    return bundle, models, loaded


def _claim(cfg: RunConfig, run_dir: Path, everything: list[nn.Module], resume: bool, overwrite: bool) -> Any:
    """The run directory locked for this run (kdkit.run.guard), cleared of a fresh run's logs, with its config."""
    lock = run_guard.claim(run_dir, resume=resume, overwrite=overwrite, needed_bytes=checkpoint_bytes(everything))
    if resume:
        run_guard.check_same_config(run_dir, cfg.model_dump(mode="json"))
    else:
        RunDir(run_dir).metrics.unlink(missing_ok=True)  # a fresh run starts a fresh log
        RunDir(run_dir).boundary.unlink(missing_ok=True)  # nor keeps an earlier run's boundary statistics
    dump_config(cfg, RunDir(run_dir).config)
    return lock


def _train_rows(cfg: RunConfig, bundle: DataBundle, models: dict[str, nn.Module], plan: Any, run_dir: Path,
                console: Console, main: bool) -> None:
    """The teacher (trained or loaded), the student alone, then the distillation the scheme's plan runs."""
    teacher = models["teacher"]

    def loaders(stage: str, train_set):
        s = cfg.settings(stage)
        return (make_loader(train_set, s.batch_size, shuffle=True, seed=s.seed),
                make_loader(bundle.val, EVAL_BATCH_SIZE, shuffle=False), s)

    train_or_load(teacher, cfg.teacher, cfg, bundle, run_dir, "teacher")
    train_loader, val_loader, s = loaders("student", bundle.train)
    fit(Supervised(models["student_alone"], s.label_smoothing), train_loader, val_loader, s, run_dir,
        "student_alone")
    boundary = boundary_set(cfg, bundle, teacher)  # from the trained teacher; only the distilled student sees them
    if boundary is not None and main:
        console.print(boundary.stats.summary())
        write_atomic(RunDir(run_dir).boundary, json.dumps(boundary.stats.as_dict(), indent=2))
    distill_set = distillation_set(cfg, bundle, boundary)
    shown: set[str] = set()  # distill.cache_teacher: where, how big, built or reused; training's before epoch 1

    def show_cache(report: dict[str, Any], final: bool = False) -> None:
        for split, info in report.items():
            if main and split not in shown and (final or split == "train"):
                console.print(describe_cache(info, split), highlight=False, soft_wrap=True)
                shown.add(split)

    # the plan starts the distilled student near the now-trained teacher (init_from_teacher) before it distils
    plan.distill(distill_set, *loaders("distill", distill_set), run_dir, on_cache=show_cache)
    if plan.teacher_cache is not None:
        show_cache(plan.teacher_cache, final=True)


def _save_models(run_dir: Path, models: dict[str, nn.Module], refs: dict[str, dict[str, Any]],
                 console: Console) -> None:
    """Every model's weights into models/, except a loaded teacher the run refers to (`refs`)."""
    for role, model in models.items():
        if role in refs:  # a copy from an earlier run of this directory would be read instead of the reference
            RunDir(run_dir).weights(role).unlink(missing_ok=True)
        else:
            save_weights(model, RunDir(run_dir).weights(role))
    if refs:
        console.print(reference_line("teacher", refs["teacher"]), highlight=False, soft_wrap=True)


def checkpoint_bytes(models: list[nn.Module]) -> int:
    """About what a run's checkpoints take: per model its final, best and last weights plus the resumable state
    (weights, best weights, two optimizer moments), with room to spare for the temp file of each write."""
    return 10 * sum(t.numel() * t.element_size() for m in models for t in m.state_dict().values())


def evaluate_models(
    cfg: RunConfig, bundle: DataBundle, models: dict[str, nn.Module], run_dir: Path, quick_cost: bool = False,
    training: dict[str, Any] | None = None, console: Console | None = None,
    outputs: dict[str, str] = TRAINING_OUTPUTS, threads: int | None = None,
    references: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Test metrics and cost of the three models; writes predictions.npz, results.json (with the verdict and,
    given `training`, how many processes trained), table.md and models/meta.json. Given a console, a line per
    step says what is being measured (timing a large model takes a while). `outputs` names the three files
    (`kdkit evaluate` writes its own beside the training's); the results file is written last, so its presence
    means the set is complete. Cost is timed with `threads` torch threads (default: the current count).
    `references`: weights kept outside the run by role (see kdkit.families.classification.meta.write_meta)."""

    def console_note(text: str) -> None:
        if console is not None:
            console.print(text, highlight=False)

    device = resolve_device(cfg.train.device)
    int8 = int8_roles(cfg)
    # a quantization-aware student is measured as what it deploys to: its int8 conversion, on the CPU
    models = {role: convert_quantized(m) if role in int8 else m for role, m in models.items()}
    preds = _predictions(cfg, bundle, models, int8, device, console_note)
    rows = []
    console_note("evaluating all three: timing latency and throughput in interleaved rounds")
    costs, cost_conditions = measure_cost(bundle, models, quick_cost, threads)
    for role in models:
        teacher_logits = None if role == "teacher" else preds["test_teacher"]
        label = LABELS[role] + (" (int8)" if role in int8 else "")
        row = {"model": label, "role": role, **costs[role]}
        row.update(metrics.classification_report(preds[f"test_{role}"], preds["test_labels"], teacher_logits))
        rows.append(row)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **preds)
    write_atomic(run_dir / outputs["predictions"], buffer.getvalue())
    diagnosis = run_diagnosis(cfg, bundle, preds, rows)
    summary = {
        "format": RESULTS_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "device": str(device),
        "data": {"name": cfg.data.name, "num_classes": bundle.num_classes, "input_shape": list(bundle.input_shape),
                 "n_test": len(bundle.test), "n_val": len(bundle.val), "class_names": list(bundle.class_names),
                 "n_train": len(bundle.train), "n_pool": diagnosis.signals.n_pool},
        "rows": rows,
        "cost": cost_conditions,
        "verdict": run_verdict({r: preds[f"test_{r}"] for r in ROLES}, preds["test_labels"], rows,
                               n_val=len(bundle.val), keep=cfg.settings("distill").keep, seed=cfg.seed,
                               data=cfg.data.name, why=diagnosis.findings[0]).as_dict(),
        "diagnosis": diagnosis.as_dict(),
    }
    if training is not None:
        summary["training"] = training
    write_meta(run_dir, bundle, models, {"teacher": cfg.teacher, "student_alone": cfg.student,
                                          "student_kd": cfg.student}, references)
    write_atomic(run_dir / outputs["table"], to_markdown(rows) + "\n" + conditions_text(cost_conditions) + "\n")
    write_atomic(run_dir / outputs["results"], json.dumps(summary, indent=2))
    return rows


def _predictions(cfg: RunConfig, bundle: DataBundle, models: dict[str, nn.Module], int8: set[str],
                 device: torch.device, note: Any) -> dict[str, np.ndarray]:
    """Every model's logits (and the labels) on the test split, the training inputs and the validation split."""
    test_loader = make_loader(bundle.test, EVAL_BATCH_SIZE, shuffle=False)
    # 'train_' fidelity is measured on the training (+ transfer) inputs only, never on boundary samples: those are
    # made from the teacher at distillation time (evaluate_run would have to remake them), and agreement right at
    # the teacher's boundary is low by design, so mixing them in would blur the comparison of the two students
    distill_loader = make_loader(distillation_data(cfg, bundle, augmented=False), EVAL_BATCH_SIZE, shuffle=False)
    # held-out inputs of the diagnosis (not the verdict's)
    val_loader = make_loader(bundle.val, EVAL_BATCH_SIZE, shuffle=False)
    preds: dict[str, np.ndarray] = {}
    for role, model in models.items():
        note(f"evaluating {LABELS[role]}: predictions on {len(bundle.test):,} test samples")
        where = cost.model_device(model) if role in int8 else device
        model.to(where)
        preds[f"test_{role}"], preds["test_labels"] = predict(model, test_loader, where)
        if type(cfg.distill.scheme).trains_on_data:  # a data-free student never saw the training split
            preds[f"train_{role}"], preds["train_labels"] = predict(model, distill_loader, where)
        if len(bundle.val):
            preds[f"val_{role}"], preds["val_labels"] = predict(model, val_loader, where)
    return preds


def run_diagnosis(cfg: RunConfig, bundle: DataBundle, preds: dict[str, np.ndarray],
                  rows: list[dict[str, Any]]) -> Diagnosis:
    """The diagnosis (kdkit.diagnosis) from the predictions evaluate_models made: the labelled training inputs are
    the first len(bundle.train) rows of the distillation data, the held-out inputs the validation split (the test
    split, which gives the verdict, only when there is no validation split)."""
    n_train = len(bundle.train)
    pool = len(bundle.transfer) if cfg.distill.use_transfer and bundle.transfer is not None else 0
    split = "val" if "val_labels" in preds else "test"
    held = Split({r: preds[f"{split}_{r}"] for r in ROLES}, preds[f"{split}_labels"])
    train = (Split({r: preds[f"train_{r}"][:n_train] for r in ROLES}, preds["train_labels"][:n_train])
             if "train_labels" in preds else None)
    notes = [] if train is not None else ["the scheme never shows the student the training inputs: no train signals"]
    signals = prediction_signals("classification", "validation split" if split == "val" else "test split",
                                 train, held, unit="tokens" if preds["test_labels"].ndim == 2 else "samples",
                                 n_train=n_train, n_pool=pool, notes=notes,
                                 capacity_ratio=capacity_ratio({r["role"]: r for r in rows}))
    return diagnose(signals)


def cost_note(results: Path) -> str | None:
    """How the cost numbers in a just-written results file were measured (threads, load, rounds), for the table."""
    conditions = json.loads(results.read_text()).get("cost")
    return conditions_text(conditions) if conditions else None


def measure_cost(bundle: DataBundle, models: dict[str, nn.Module], quick: bool = False,
                 threads: int | None = None) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Cost of the models (int8 students already converted) timed together in interleaved rounds on a real test
    input (noise is no valid input for token ids), with the speed-up over the teacher and the conditions."""
    example = example_inputs(bundle.test, size=1)
    return cost.compare(models, bundle.input_shape, example, quick=quick, threads=threads)


def evaluate_run(run_dir: str | Path, console: Console | None = None, quick_cost: bool = False,
                 threads: int | None = None) -> list[dict]:
    """Re-evaluate a run directory from its saved config and models alone."""
    cfg, bundle, models = load_run_models(run_dir)
    training = previous_training(Path(run_dir))  # how it was trained stays true when the models are re-measured
    rows = evaluate_models(cfg, bundle, models, Path(run_dir), quick_cost=quick_cost, training=training,
                           console=console, outputs=EVALUATION_OUTPUTS, threads=threads,
                           references=references(run_dir))
    scheme = "" if cfg.distill.scheme.name == DEFAULT_SCHEME[CLASSIFICATION] else f", scheme {cfg.distill.scheme.name}"
    print_table(rows, title=f"kdkit: {cfg.data.name} (test split{scheme}, re-evaluated{processes_note(training)})",
                console=console, caption=cost_note(Path(run_dir) / EVALUATION_OUTPUTS["results"]))
    show_verdict(Path(run_dir), console, EVALUATION_OUTPUTS["results"])
    return rows


def run_config(run_dir: str | Path, roles: tuple[str, ...] = ROLES) -> RunConfig:
    """A complete run directory's config, with the weights of `roles` to come from its models/ folder (or the files
    it references: see kdkit.run.meta.weights_file, which refuses one that vanished or changed)."""
    import yaml

    from kdkit.families.classification.config import parse_config

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run directory not found: {run_dir}")
    referenced = references(run_dir)
    missing = [p for p in [CONFIG, *(f"{MODELS}/{r}.safetensors" for r in roles if r not in referenced)]
               if not (run_dir / p).exists()]
    if missing:
        raise RunDirError(f"{run_dir} is not a complete kdkit run: missing {', '.join(missing)}")
    for role in referenced.keys() & set(roles):
        weights_file(run_dir, role)  # still there, with the bytes it had: checked before any data is read
    try:
        raw = yaml.safe_load(RunDir(run_dir).config.read_text())
    except (yaml.YAMLError, UnicodeDecodeError):
        raw = None
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k, {}), dict) for k in ("teacher", "student")):
        raise RunDirError(f"{RunDir(run_dir).config} is damaged (not a YAML mapping of a kdkit config); restore it "
                          "from the config you trained with (kdkit train writes it there unchanged)")
    scheme = raw.get("distill", {}).get("scheme", {}) if isinstance(raw.get("distill", {}), dict) else {}
    scheme = scheme if isinstance(scheme, dict) else {}
    others = [m for value in scheme.values() if isinstance(value, list) for m in value]  # a scheme's model entries
    for spec in [raw.get("teacher", {}), raw.get("student", {}), *others]:  # the run keeps its weights in models/:
        if isinstance(spec, dict):                                         # no other file is needed
            spec["checkpoint"] = None
            if isinstance(spec.get("params"), dict):  # nor the pretrained weights it started from
                spec["params"].pop("pretrained", None)
                spec["params"].pop("weights", None)
    try:
        with saved_run_sources():  # a vanished model folder is refused when its role is built, not here
            return parse_config(raw)
    except ConfigError as err:  # a hand-edited or damaged config.yaml: say which file, not just which key
        raise RunDirError(f"{RunDir(run_dir).config}: {err}; restore the file from the config you trained with") \
            from None


def load_run_models(run_dir: str | Path, roles: tuple[str, ...] = ROLES
                    ) -> tuple[RunConfig, DataBundle, dict[str, nn.Module]]:
    """The config, data and the three models of a run directory, the trained weights (from its models/ folder or
    the files it references) loaded into those of `roles`."""
    cfg = run_config(run_dir, roles)
    bundle = build_data(cfg.data, cfg.seed)
    models = build_models(cfg, bundle)
    for role in roles:
        load_weights(models[role], weights_file(run_dir, role))
    return cfg, bundle, models
