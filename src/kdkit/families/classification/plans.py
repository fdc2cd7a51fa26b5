"""The pipeline's side of a scheme: how the config's models become what a scheme's plan needs (kdkit.schemes.plan
.PlanInputs). The pipeline builds the plan before anything trains, so a bad config fails at once, then runs it once
the teacher is ready:

    plan = build_plan(cfg, bundle, student, teacher, terms)                  # builds, checks
    plan.distill(distill_set, train_loader, val_loader, settings, run_dir)  # trains the student
    plan.extra_models        # assistants, other teachers, peers, EMA teacher, generations: saved in run_dir/models/

The import graph reads one way: config -> plans -> schemes -> trainer -> step; no scheme imports the config.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from kdkit.adapters import example_inputs, probe
from kdkit.data import DataBundle, make_loader
from kdkit.data.loaders import EVAL_BATCH_SIZE
from kdkit.errors import ModelError
from kdkit.families.classification.config import RunConfig
from kdkit.io.checkpoint import load_weights
from kdkit.models import build_from_config
from kdkit.models.spec import ModelConfig
from kdkit.schemes.plan import PlanInputs, SchemePlan
from kdkit.schemes.supervised import Supervised
from kdkit.terms import LossTerm
from kdkit.trainer.loop import fit, seed_everything
from kdkit.trainer.settings import TrainSettings


def build_from(bundle: DataBundle, spec: ModelConfig, seed: int) -> nn.Module:
    """A model from its config entry, initialised from `seed`; its checkpoint (if any) is loaded and checked."""
    seed_everything(seed)
    model = build_from_config(spec, bundle)
    if spec.checkpoint is not None:
        load_weights(model, spec.checkpoint)
    check_outputs(model, bundle, spec.name)
    return model


def check_outputs(model: nn.Module, bundle: DataBundle, role: str) -> None:
    """One forward on a real test input: the logits must have the data's classes, and one row per label (per sample,
    or per token in sequence labelling)."""
    out = probe(model, (), example_inputs(bundle.test, size=1))["logits"]  # eval mode, no grad, modes restored
    if out.shape[-1] != bundle.num_classes:
        raise ModelError(
            f"the {role} has {out.shape[-1]} outputs but the data has {bundle.num_classes} classes; "
            f"set num_classes/params of the {role} to match the data"
        )
    label = bundle.test[0][1] if isinstance(bundle.test[0], (tuple, list)) else None
    if isinstance(label, Tensor) and out.dim() - 2 != label.dim():
        per_token = out.dim() > 2
        raise ModelError(
            f"the {role} gives one prediction per {'token' if per_token else 'sample'} (logits "
            f"{tuple(out.shape)}) but the data has one label per {'sample' if per_token else 'token'}; "
            f"{'remove pooling: none' if per_token else 'set pooling: none'} in the {role}'s params"
        )


def train_or_load(
    model: nn.Module, spec: ModelConfig, cfg: RunConfig, bundle: DataBundle, run_dir: Path, name: str
) -> None:
    """A teacher-like model: left as loaded when its config gives a checkpoint, else trained on the labels with the
    teacher's settings (plus the entry's own `train` overrides)."""
    if spec.checkpoint is not None:
        return
    s = TrainSettings(**{**cfg.settings("teacher").model_dump(), **spec.train})
    fit(Supervised(model, s.label_smoothing), make_loader(bundle.train, s.batch_size, shuffle=True, seed=s.seed),
        make_loader(bundle.val, EVAL_BATCH_SIZE, shuffle=False), s, run_dir, name)


def build_plan(
    cfg: RunConfig, bundle: DataBundle, student: nn.Module, teacher: nn.Module, terms: list[LossTerm]
) -> SchemePlan:
    """The plan of the config's scheme, with what it needs from the run; builds and checks the scheme's extra
    models (and module paths, init_from_teacher) before anything trains."""

    def train_extra(model: nn.Module, spec: ModelConfig, run_dir: Path | None, role: str) -> None:
        train_or_load(model, spec, cfg, bundle, run_dir, role)

    inputs = PlanInputs(
        student=student, teacher=teacher, terms=terms, term_specs=cfg.distill.losses, student_spec=cfg.student,
        seed=cfg.seed, example=example_inputs(bundle.test, size=1), input_shape=bundle.input_shape,
        num_classes=bundle.num_classes, num_train=len(bundle.train),
        build=lambda spec, seed: build_from(bundle, spec, seed), train_or_load=train_extra,
        init_from_teacher=cfg.distill.init_from_teacher, student_quantized=cfg.student.quantize is not None,
        cache_teacher=cfg.distill.cache_teacher, cache_dir=cfg.distill.cache_dir,
    )
    return cfg.distill.scheme.plan(inputs)
