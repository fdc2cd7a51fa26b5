"""`kdkit train` of a language-model config (kdkit.families.lm.config) and `kdkit demo --task lm`: the teacher, the
student trained alone and the distilled student (same initial weights, same settings), measured on the test split and
written as a run directory that `kdkit report` and `kdkit compare` read (kdkit.families.lm.rundir).

Kept apart from kdkit.families.classification.pipeline: the models are causal LMs whose outputs are (N, L, V) logits,
their data is prompt/response rows, and their table is perplexity, exact match and generation speed rather than accuracy
and latency.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from kdkit.data import build_lm_data
from kdkit.data.lm import LMBundle
from kdkit.data.loaders import EVAL_BATCH_SIZE, make_loader
from kdkit.diagnosis import diagnose
from kdkit.families.lm.config import LMRunConfig, dump_lm_config
from kdkit.families.lm.rundir import table_markdown, write_lm_run
from kdkit.families.lm.signals import lm_signals
from kdkit.io.checkpoint import load_weights, save_state
from kdkit.lm.dataset import LMDataset
from kdkit.lm.metrics import exact_hits, lm_units, summarize_units
from kdkit.lm.vocab import check_model_vocabularies
from kdkit.models import build_model
from kdkit.models.lm import load_causal_lm
from kdkit.report.runinfo import diagnosis_lines
from kdkit.run import guard as run_guard
from kdkit.run.meta import teacher_reference
from kdkit.run.rundir import LABELS, ROLES, RunDir
from kdkit.schemes.lm_plan import LMPlanInputs
from kdkit.trainer.batches import resolve_device
from kdkit.trainer.loop import fit, seed_everything
from kdkit.trainer.resume import resuming
from kdkit.trainer.teacher_cache import tensors_digest
from kdkit.verdict import lm_run_verdict


@dataclass
class LMRunResult:
    run_dir: Path
    rows: dict[str, dict[str, float]]  # by role
    models: dict[str, nn.Module]


def _hf_path(name: str) -> str | None:
    return name.partition(":")[2] if name.startswith("hf_lm:") else None


def build_lm_models(cfg: LMRunConfig) -> tuple[LMBundle, LMDataset | None, nn.Module, nn.Module]:
    """Data, then the teacher and the student's initial weights (seeded by cfg.seed, teacher first). An hf_lm:
    teacher is loaded before the data, whose texts its tokenizer encodes."""
    teacher = load_causal_lm(_hf_path(cfg.teacher.name)) if _hf_path(cfg.teacher.name) else None
    data, transfer = build_lm_data(cfg.data, cfg.seed, getattr(teacher, "tokenizer", None))
    seed_everything(cfg.seed)

    def build(spec: Any) -> nn.Module:
        return build_model(spec.name, data.input_shape, data.vocab_size, **spec.params)

    teacher = teacher if teacher is not None else build(cfg.teacher)
    student = build(cfg.student)
    if cfg.teacher.checkpoint is not None:
        load_weights(teacher, cfg.teacher.checkpoint)
    if cfg.student.checkpoint is not None:
        load_weights(student, cfg.student.checkpoint)
    check_model_vocabularies(teacher, student)  # hf_lm: models carry tokenizers: one line naming the first mismatch
    return data, transfer, teacher, student


def teacher_is_trained(cfg: LMRunConfig) -> bool:
    """A teacher given as weights (checkpoint) or as a pretrained hf_lm: folder is used as it is, unless
    teacher.train asks for training (fine-tuning) on the data."""
    return (cfg.teacher.checkpoint is None and _hf_path(cfg.teacher.name) is None) or bool(cfg.teacher.train)


def teacher_source(cfg: LMRunConfig) -> dict[str, Any] | None:
    """The reference (kdkit.run.meta) of a teacher used as given: its teacher.checkpoint file, else its hf_lm:
    folder (weights, config and tokenizer files); None for a teacher the run trains."""
    from kdkit.run.meta import file_reference, folder_reference

    if teacher_is_trained(cfg):
        return None
    if cfg.teacher.checkpoint is not None:
        return file_reference(cfg.teacher.checkpoint)
    return folder_reference(str(_hf_path(cfg.teacher.name)))


def save_lm_models(run_dir: Path, models: dict[str, nn.Module], refs: dict[str, dict[str, Any]],
                   console: Console) -> None:
    """models/<role>.safetensors of every model but those the run refers to (`refs`), recorded in models/meta.json
    (removed when there are none: an earlier run's reference must not outlive it)."""
    import json

    from kdkit.io.checkpoint import write_atomic
    from kdkit.run.meta import META_FORMAT, reference_line

    for role, model in models.items():
        if role in refs:  # a copy from an earlier run of this directory would be read instead of the reference
            RunDir(run_dir).weights(role).unlink(missing_ok=True)
        else:
            save_state({k: v.detach().cpu() for k, v in model.state_dict().items()}, RunDir(run_dir).weights(role))
    if not refs:
        RunDir(run_dir).meta.unlink(missing_ok=True)
        return
    meta = {"format": META_FORMAT, "kind": "lm", "models": {role: {"reference": ref} for role, ref in refs.items()}}
    write_atomic(RunDir(run_dir).meta, json.dumps(meta, indent=2))
    for role, ref in refs.items():
        console.print(reference_line(role, ref), highlight=False, soft_wrap=True)


def distill(cfg: LMRunConfig, student: nn.Module, teacher: nn.Module, data: LMBundle, transfer: LMDataset | None,
            run_dir: Path, device: torch.device) -> dict[str, Any]:
    """Train the distilled student by cfg.distill.scheme's plan; returns what the run records about it."""
    inputs = LMPlanInputs(student=student, teacher=teacher, losses=cfg.distill.losses, data=data, transfer=transfer,
                          settings=cfg.settings("distill"), run_dir=run_dir, device=device, seed=cfg.seed)
    return cfg.distill.scheme.plan(inputs).distill()


def measure(models: dict[str, nn.Module], data: LMBundle, device: torch.device) -> tuple[dict, dict]:
    """Per role: the table's row and the per-test-row sums (lm_units, plus exact hits with prompts)."""
    eos = data.tokenizer.eos_token_id
    pad = getattr(data.tokenizer, "pad_token_id", None)
    pad = eos if pad is None else pad
    rows, units = {}, {}
    for role in ROLES:
        model = models[role].to(device)
        teacher = None if role == "teacher" else models["teacher"].to(device)
        u = lm_units(model, data.test, teacher, device=device)
        row: dict[str, Any] = {}
        if data.test.prompts is not None:
            u["exact"], tokens, seconds = exact_hits(model, data.test, eos, pad, device=device)
            row["tokens_per_s"] = tokens / max(seconds, 1e-9)
        row.update(summarize_units(u))
        row["params"] = float(sum(p.numel() for p in model.parameters()))
        rows[role], units[role] = row, u
    return rows, units


def run_lm(cfg: LMRunConfig, console: Console | None = None, overwrite: bool = False,
           resume: bool = False, copy_teacher: bool = False) -> LMRunResult:
    """Train and measure the three models of an LM config and write its run directory; print the table.

    A teacher used as given (teacher_is_trained false) is not copied into the run: models/meta.json references
    its checkpoint file or hf_lm: folder (kdkit.run.meta), unless `copy_teacher` or unless the run changed it."""
    console = console or Console()
    start = time.perf_counter()
    run_dir = Path(cfg.output_dir)
    run_guard.precheck(run_dir, resume=resume, overwrite=overwrite)  # before the data: a run that cannot start
    if resume:
        run_guard.check_same_config(run_dir, cfg.model_dump(mode="json"))
    data, transfer, teacher, student_init = build_lm_models(cfg)
    source = None if copy_teacher else teacher_source(cfg)
    loaded = None if source is None else (source, tensors_digest(teacher.state_dict()))
    lock = run_guard.claim(run_dir, resume=resume, overwrite=overwrite,
                           needed_bytes=10 * sum(p.numel() * 4 for m in (teacher, student_init) for p in
                                                 m.parameters()))
    try:
        if resume:  # the stages of one experiment only
            run_guard.check_same_config(run_dir, cfg.model_dump(mode="json"))
        else:
            RunDir(run_dir).metrics.unlink(missing_ok=True)  # fit appends to this log
        dump_lm_config(cfg, RunDir(run_dir).config)
        device = resolve_device(cfg.train.device)
        models, record = _train_three(cfg, data, transfer, teacher, student_init, run_dir, device, resume)
        rows, units = measure(models, data, device)
        save_lm_models(run_dir, models, teacher_reference(tensors_digest(teacher.state_dict()), loaded), console)
        if hasattr(data.tokenizer, "save") and not _hf_path(cfg.teacher.name):
            data.tokenizer.save(RunDir(run_dir).tokenizer)
        pool = cfg.distill.scheme.transfer_pool(len(transfer) if transfer is not None else 0)
        diagnosis = diagnose(lm_signals(models, data.train, data.val, device, rows, pool))
        verdict = lm_run_verdict(units, rows, seed=cfg.seed, why=diagnosis.findings[0])
        seconds = time.perf_counter() - start
        summary = {"seed": cfg.seed, "device": str(device), "seconds": seconds,
                   "data": {"name": cfg.data.name, "n_train": len(data.train), "n_val": len(data.val),
                            "n_test": len(data.test), "n_transfer": len(transfer) if transfer is not None else 0,
                            "seq_len": data.seq_len, "vocab_size": data.vocab_size,
                            "test_tokens": int(units["teacher"]["tokens"].sum()), **data.info},
                   "training": record, "verdict": verdict.as_dict(), "diagnosis": diagnosis.as_dict()}
        write_lm_run(run_dir, rows, units, summary)
    finally:
        lock.release()
    _print_run(console, cfg, data, rows, verdict.lines() + diagnosis_lines(diagnosis, verdict), record)
    console.print(f"{seconds:.0f} s; run directory: {run_dir} (`kdkit report {run_dir}`)", highlight=False)
    return LMRunResult(run_dir, rows, models)


def _train_three(cfg: LMRunConfig, data: Any, transfer: Any, teacher: nn.Module, student_init: nn.Module,
                 run_dir: Path, device: torch.device, resume: bool) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    """The teacher (unless it is used as loaded), the student alone and the distilled student, both students from
    `student_init`'s weights; the models by role and the distillation's record."""
    from kdkit.schemes.supervised import Supervised

    alone, distilled = copy.deepcopy(student_init), copy.deepcopy(student_init)
    with resuming(resume):  # each stage's fit continues from its checkpoint, or loads its final weights
        if teacher_is_trained(cfg):
            s = cfg.settings("teacher")
            fit(Supervised(teacher), make_loader(data.train, s.batch_size, shuffle=True, seed=s.seed),
                make_loader(data.val, EVAL_BATCH_SIZE, shuffle=False), s, run_dir=run_dir, name="teacher")
        s = cfg.settings("student")
        fit(Supervised(alone), make_loader(data.train, s.batch_size, shuffle=True, seed=s.seed),
            make_loader(data.val, EVAL_BATCH_SIZE, shuffle=False), s, run_dir=run_dir, name="student_alone")
        # the teacher's answers (sequence level) and top-k cache are made again: same teacher, same seed
        record = distill(cfg, distilled, teacher, data, transfer, run_dir, device)
    return {"teacher": teacher, "student_alone": alone, "student_kd": distilled}, record


def _print_run(console: Console, cfg: LMRunConfig, data: Any, rows: dict[str, dict[str, Any]], lines: list[str],
               record: dict[str, Any]) -> None:
    """The run's table, its verdict and diagnosis `lines`, and the teacher cache's size."""
    test = f"{len(data.test):,} test {'problems' if data.test.prompts is not None else 'texts'}"
    console.print(f"kdkit (lm): {cfg.data.name}, scheme {cfg.distill.scheme.name}, {test}", highlight=False)
    console.print(table_markdown({LABELS[r]: rows[r] for r in ROLES}), soft_wrap=True, markup=False,
                  highlight=False)
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if "teacher_cache" in record:
        c = record["teacher_cache"]
        draws = f", {c['tail_samples']} tail draws per token" if c["tail_samples"] else ""
        console.print(f"teacher top-{c['k']} cache{draws} ({c['tail']} tail): {c['bytes'] / 1e6:.2f} MB in "
                      f"{c['build_seconds']:.1f} s", highlight=False)


__all__ = ["LMRunResult", "build_lm_models", "distill", "measure", "run_lm", "teacher_source"]
