"""The distilled student's training as a config's ``distill.scheme`` names it: one small class per scheme, one
registry line each. This is pipeline code (it reads the config, builds models and data loaders, trains): it lives
beside the pipeline, not under kdkit.schemes, so the import graph reads one way: config -> plans -> schemes, and
no scheme imports the config or the pipeline. The pipeline builds the plan before anything trains (so a bad config
fails at once), then runs it once the teacher is ready:

    plan = SCHEME_PLANS[cfg.distill.scheme.name](cfg, bundle, student, teacher, terms)   # builds, checks
    plan.distill(distill_set, train_loader, val_loader, settings, run_dir)              # trains the student
    plan.extra_models        # assistants, other teachers, peers, EMA teacher, generations: saved in run_dir/models/

``distill.init_from_teacher`` (teacher-near initialisation, kdkit.models.init) is checked when the plan is built
and applied by ``distill``, once the teacher is trained: the student-alone row keeps its random start.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from kdkit.adapters import example_inputs, probe
from kdkit.checkpoint import load_weights
from kdkit.config import ModelConfig, RunConfig
from kdkit.data import DataBundle, make_loader
from kdkit.errors import ConfigError, ModelError
from kdkit.models import build_from_config
from kdkit.models.init import check_same_architecture, teacher_near_init
from kdkit.schemes.assistants import distill_through_assistants
from kdkit.schemes.base import Scheme
from kdkit.schemes.born_again import distill_born_again
from kdkit.schemes.data_free import distill_data_free, synthesize
from kdkit.schemes.inversion import BATCHNORMS
from kdkit.schemes.multi_teacher import MultiTeacherDistillation
from kdkit.schemes.mutual import MutualLearning
from kdkit.schemes.offline import OfflineDistillation
from kdkit.schemes.self_distill import SelfDistillation
from kdkit.schemes.supervised import Supervised
from kdkit.settings import TrainSettings
from kdkit.teacher_cache import cache_report, persist_teacher_cache
from kdkit.terms import LossTerm, check_paths
from kdkit.trainer import fit, resolve_device, seed_everything


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


def check_init_from_teacher(cfg: RunConfig, student: nn.Module, teacher: nn.Module) -> None:
    """With distill.init_from_teacher, the student must have the teacher's architecture: checked right after the
    models are built, so a mismatch fails before anything trains."""
    if cfg.distill.init_from_teacher is None:
        return
    if cfg.student.quantize is not None:  # a quantization-aware student carries observers the teacher lacks
        raise ConfigError("distill.init_from_teacher interpolates a float student with the teacher; it cannot be "
                          "combined with student.quantize: remove one of them")
    check_same_architecture(student, teacher)


def train_or_load(
    model: nn.Module, spec: ModelConfig, cfg: RunConfig, bundle: DataBundle, run_dir: Path, name: str
) -> None:
    """A teacher-like model: left as loaded when its config gives a checkpoint, else trained on the labels with the
    teacher's settings (plus the entry's own `train` overrides)."""
    if spec.checkpoint is not None:
        return
    s = TrainSettings(**{**cfg.settings("teacher").model_dump(), **spec.train})
    fit(Supervised(model, s.label_smoothing), make_loader(bundle.train, s.batch_size, shuffle=True, seed=s.seed),
        make_loader(bundle.val, 512, shuffle=False), s, run_dir, name)


class SchemePlan:
    """How the distilled student is trained. Subclasses build their extra models in __init__ and train in distill."""

    def __init__(
        self, cfg: RunConfig, bundle: DataBundle, student: nn.Module, teacher: nn.Module, terms: list[LossTerm]
    ) -> None:
        self.cfg, self.bundle, self.student, self.teacher, self.terms = cfg, bundle, student, teacher, terms
        self.options = cfg.distill.scheme
        self.extra_models: dict[str, nn.Module] = {}
        self.teacher_cache: dict[str, Any] | None = None  # with distill.cache_teacher: its report, once distilled
        check_paths(student, teacher, terms)  # a wrong module path fails before any training
        check_init_from_teacher(cfg, student, teacher)

    def scheme(self, distill_set: Dataset, run_dir: Path) -> Scheme:
        raise NotImplementedError

    def distill(
        self, distill_set: Dataset, train_loader: DataLoader, val_loader: DataLoader, settings: TrainSettings,
        run_dir: Path | None, on_epoch: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """Train the distilled student; `on_epoch` (see fit) sees the student's epochs, in the schemes that train
        it in one stage (not the assistants and born-again chains, nor data-free distillation, which ignore it)."""
        scheme = self.scheme(distill_set, run_dir)
        if self.cfg.distill.cache_teacher:  # teacher outputs from disk when a run with the same key made them
            persist_teacher_cache(scheme, distill_set, val_loader.dataset if val_loader is not None else None,
                                  settings, self.cfg.distill.cache_dir)
        try:
            fit(scheme, train_loader, val_loader, settings, run_dir, "student_kd", on_epoch=on_epoch)
        finally:  # also when a tuning trial is pruned or fails: the shared teacher must not keep this run's hooks
            if hasattr(scheme, "close"):
                scheme.close()
            self.teacher_cache = cache_report(scheme)


class OfflinePlan(SchemePlan):
    def scheme(self, distill_set: Dataset, run_dir: Path) -> Scheme:
        if self.cfg.distill.init_from_teacher is not None:  # the teacher is trained by now; distillation not begun
            teacher_near_init(self.student, self.teacher, self.cfg.distill.init_from_teacher)
        cache_size = len(distill_set) if self.cfg.distill.cache_teacher else None
        return OfflineDistillation(self.student, self.teacher, self.terms, cache_size=cache_size,
                                   example=example_inputs(distill_set))  # creates adapters where shapes differ


class MultiTeacherPlan(SchemePlan):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for i, spec in enumerate(self.options.teachers, start=2):
            self.extra_models[f"teacher{i}"] = build_from(self.bundle, spec, self.cfg.seed + 100 + i)

    def scheme(self, distill_set: Dataset, run_dir: Path) -> Scheme:
        for (role, model), spec in zip(self.extra_models.items(), self.options.teachers, strict=True):
            train_or_load(model, spec, self.cfg, self.bundle, run_dir, role)
        cache_size = len(distill_set) if self.cfg.distill.cache_teacher else None
        return MultiTeacherDistillation(self.student, [self.teacher, *self.extra_models.values()], self.terms,
                                        self.options.weights, self.options.combine, cache_size)


class AssistantsPlan(SchemePlan):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for i, spec in enumerate(self.options.assistants, start=1):
            self.extra_models[f"assistant{i}"] = build_from(self.bundle, spec, self.cfg.seed + 200 + i)
        chain = [self.teacher, *self.extra_models.values(), self.student]
        for pupil, mentor in zip(chain[1:], chain[:-1], strict=True):
            check_paths(pupil, mentor, self.terms)  # feature paths must exist in every pair, before any training

    def distill(self, distill_set, train_loader, val_loader, settings, run_dir, on_epoch=None) -> None:
        distill_through_assistants(self.teacher, list(self.extra_models.values()), self.student,
                                   self.cfg.distill.losses, train_loader, val_loader, settings, run_dir, "student_kd")


class BornAgainPlan(SchemePlan):
    """Generations 1 .. k-1 are built like the student, each from its own seed, and saved as gen1, gen2, ...; the
    distilled student is generation k. With init_from_teacher every generation starts near its own teacher."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for g in range(1, self.options.generations):
            self.extra_models[f"gen{g}"] = build_from(self.bundle, self.cfg.student, self.cfg.seed + 400 + g)
        chain = [self.teacher, *self.extra_models.values(), self.student]
        for pupil, mentor in zip(chain[1:], chain[:-1], strict=True):
            check_paths(pupil, mentor, self.terms)  # feature paths must exist in every pair, before any training

    def distill(self, distill_set, train_loader, val_loader, settings, run_dir, on_epoch=None) -> None:
        distill_born_again(self.teacher, [*self.extra_models.values(), self.student], self.cfg.distill.losses,
                           train_loader, val_loader, settings, run_dir, "student_kd",
                           init_from_teacher=self.cfg.distill.init_from_teacher)


class MutualPlan(SchemePlan):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        peers = self.options.peers or [self.cfg.student]  # by default one peer built like the student
        for i, spec in enumerate(peers, start=1):
            self.extra_models[f"peer{i}"] = build_from(self.bundle, spec, self.cfg.seed + 300 + i)

    def scheme(self, distill_set: Dataset, run_dir: Path) -> Scheme:
        return MutualLearning(self.student, list(self.extra_models.values()), self.options.T, self.options.alpha)


class SelfDistillPlan(SchemePlan):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._scheme = SelfDistillation(self.student, self.terms, self.options.decay, self.options.warmup_epochs)
        self.extra_models["ema_teacher"] = self._scheme.teacher

    def scheme(self, distill_set: Dataset, run_dir: Path) -> Scheme:
        return self._scheme


class DataFreePlan(SchemePlan):
    """The trained teacher's inputs are synthesised (DeepInversion) and the student distilled on them alone; the
    real validation split is only logged: the student ends at its last epoch, not chosen by real data."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # checked now, so that a run that cannot work stops before the teacher and the student alone train
        if not example_inputs(self.bundle.test, size=1).is_floating_point():
            raise ConfigError("scheme 'data_free' optimises continuous inputs; it cannot synthesise token ids "
                              "(text): choose another scheme for text data")
        if self.options.bn_weight > 0 and not any(isinstance(m, BATCHNORMS) for m in self.teacher.modules()):
            raise ModelError(f"scheme 'data_free' matches the teacher's BatchNorm statistics, but "
                             f"{type(self.teacher).__name__} has no BatchNorm layer; use a teacher with BatchNorm or "
                             "set distill.scheme.bn_weight: 0")

    def distill(self, distill_set, train_loader, val_loader, settings, run_dir, on_epoch=None) -> None:
        o = self.options
        synthetic = synthesize(self.teacher, o.num_samples or len(self.bundle.train), self.bundle.input_shape,
                               self.bundle.num_classes, steps=o.steps, bn_weight=o.bn_weight, tv_weight=o.tv_weight,
                               seed=settings.seed, device=resolve_device(settings.device))
        # the config holds one kd term (checked when parsed); its T, defaulted by the loss itself when not given
        distill_data_free(self.student, self.teacher, synthetic, T=float(self.terms[0].loss.T),
                          settings=settings.model_copy(update={"keep": "last"}), val_loader=val_loader,
                          run_dir=run_dir, name="student_kd")


SCHEME_PLANS: dict[str, type[SchemePlan]] = {
    "offline": OfflinePlan,
    "assistants": AssistantsPlan,
    "multi_teacher": MultiTeacherPlan,
    "mutual": MutualPlan,
    "self_distill": SelfDistillPlan,
    "data_free": DataFreePlan,
    "born_again": BornAgainPlan,
}
