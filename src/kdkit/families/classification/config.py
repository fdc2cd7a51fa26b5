"""YAML run configs, validated with pydantic. Every error becomes one line naming the key and the fix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    PositiveInt,
    PrivateAttr,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from kdkit.config.devices import check_devices
from kdkit.config.types import LaxPath, StrictModel
from kdkit.config.validation import format_validation_error
from kdkit.config.yaml import read_config
from kdkit.data.source import ClassificationSource, source_options
from kdkit.errors import ConfigError
from kdkit.families.classification.built_terms import BuiltTerms, terms_of
from kdkit.models.spec import ModelConfig
from kdkit.schemes.registry import SchemeOptions, scheme_options, schemes
from kdkit.trainer.settings import TrainSettings
from kdkit.tune.config import TuneConfig

_Strict = StrictModel  # every section: strict types, no unknown keys (see kdkit.config.types)


class BoundaryConfig(_Strict):
    """distill.boundary: adversarial samples near the teacher's decision boundary, added to the distillation data
    (Heo et al., AAAI 2019; see kdkit.data.boundary for the update rule)."""

    num_samples: PositiveInt = Field(description="boundary samples to generate from correctly classified training "
                                     "inputs")
    steps: PositiveInt = Field(10, description="most attack steps per sample")
    step_size: float = Field(0.5, gt=0, description="scale of the adaptive step eta = step_size * L / ||grad L||^2 "
                             "(1 jumps to the linearised boundary and often overshoots)")
    target: Literal["second", "random"] = Field(
        "second", description="class to push towards: the teacher's second most likely, or a random other class"
    )
    margin_eps: float = Field(0.1, ge=0, description="a sample stops once the teacher's logit margin z_b - z_t "
                              "falls below this (keeps it on the base side of the boundary)")


# the losses that the config.yaml of an older run holds when its config gave none (written out with KD's values then):
# not a default, only recognised, so mutual learning runs written that way still load
OLDER_RUNS_NO_LOSSES = [{"name": "kd", "T": 4.0, "alpha": 0.1}]


class DistillConfig(_Strict):
    scheme: SerializeAsAny[SchemeOptions] = Field(
        default_factory=lambda: scheme_options(None), description="who teaches the student: {name: <scheme>, ...its "
        "keys}; each scheme's file in kdkit.schemes declares its name, keys and defaults (default: offline)",
    )
    losses: list[dict[str, Any]] = Field(
        default_factory=lambda: [{"name": "kd"}],
        description="loss terms, e.g. [{name: kd, weight: 1.0, T: 4, alpha: 0.1}]; default [{name: kd}]: KD with the "
        "loss's own defaults (kdkit.losses.kd.DEFAULT_T, DEFAULT_ALPHA)",
    )
    use_transfer: bool = Field(True, description="add the unlabelled transfer set to the distillation data")
    cache_teacher: bool = Field(
        False, description="compute teacher outputs once per sample (only without random augmentation) and keep "
        "them on disk, keyed by the teacher's weights, the data and the input view, for later seeds, students, "
        "tune trials and reruns (kdkit.trainer.teacher_cache)",
    )
    cached_views: PositiveInt | None = Field(
        None, description="keep the teacher's outputs on this many augmented views of every training sample (the "
        "image folder's flip and random_crop, train.augment's ops, their draws recorded) on disk beside the teacher "
        "cache, and give the student one of them each epoch (Shen & Xing 2022, FKD; kdkit.trainer.view_cache): "
        "augmentation without a teacher forward per step. Offline scheme, logit terms only",
    )
    cached_top_k: PositiveInt | None = Field(
        None, description="with cached_views: keep the teacher's top k log-probabilities per view (the rest spread "
        "evenly) instead of all classes",
    )
    cache_dir: LaxPath | None = Field(
        None, description="where cache_teacher keeps teacher outputs; default $KDKIT_CACHE_DIR, else "
        "~/.cache/kdkit/teacher",
    )
    train: dict[str, Any] = Field(default_factory=dict, description="overrides for the distilled student")
    init_from_teacher: float | None = Field(
        None, gt=0, le=1, description="start the distilled student at lam * teacher + (1 - lam) * random (Stanton et "
        "al. 2021); needs a student with the teacher's architecture and a scheme that starts near its teacher "
        "(SchemeOptions.starts_near_teacher)",
    )
    boundary: BoundaryConfig | None = Field(
        None, description="add adversarial boundary samples of the teacher to the distillation data, e.g. "
        "{num_samples: 1000} (Heo et al. 2019); off by default",
    )

    _built: BuiltTerms | None = PrivateAttr(None)  # the terms parse_config built from `losses`

    @field_validator("scheme", mode="before")
    @classmethod
    def _scheme_by_name(cls, raw: Any) -> SchemeOptions:
        return scheme_options(raw)  # the registry's options model of the scheme `raw` names

    def keep_terms(self) -> list[Any]:
        """Build the loss terms (checking every loss's options) and keep them for :meth:`loss_terms`."""
        self._built = None
        terms = terms_of(self.losses, None)
        self._built = BuiltTerms(self.losses, terms)
        return terms

    def loss_terms(self) -> list[Any]:
        """The LossTerms of `losses`: the ones parse_config built, the first time (so a run builds each loss once),
        new ones after that (see kdkit.families.classification.built_terms)."""
        return terms_of(self.losses, self._built)

    @model_validator(mode="after")
    def _fits_the_scheme(self) -> DistillConfig:
        scheme, name = type(self.scheme), self.scheme.name
        if self.boundary is not None and not scheme.distils_teacher_on_data:
            which = ", ".join(n for n, c in schemes().items() if c.distils_teacher_on_data)
            raise ValueError(f"scheme '{name}' does not distil the teacher on the distillation data, so boundary "
                             f"samples would go unused (only {which} do); remove distill.boundary")
        if self.cached_views is not None and not scheme.replays_views:
            which = " and ".join(n for n, c in schemes().items() if c.replays_views)
            raise ValueError(f"cached_views replays one teacher's stored answers, which only scheme {which} can use "
                             f"(not '{name}'); remove distill.cached_views")
        if self.cached_views is not None and (self.cache_teacher or self.boundary is not None):
            raise ValueError("cached_views keeps the teacher's outputs per augmented view; it replaces cache_teacher "
                             "and does not take boundary samples: remove distill.cache_teacher / distill.boundary")
        if self.cached_top_k is not None and self.cached_views is None:
            raise ValueError("cached_top_k applies to cached_views; set distill.cached_views or remove it")
        if self.cache_teacher and not scheme.cacheable:
            which = " and ".join(n for n, c in schemes().items() if c.cacheable)
            raise ValueError(f"scheme '{name}' has no fixed teacher outputs for cache_teacher to keep (only {which} "
                             "do); set distill.cache_teacher: false")
        if not scheme.reads_losses and self.losses not in (type(self)().losses, OLDER_RUNS_NO_LOSSES):
            own = ", ".join(k for k in scheme.model_fields if k != "name")
            raise ValueError(f"scheme '{name}' does not read distill.losses (its options are {own} under "
                             "distill.scheme); remove distill.losses or choose another scheme")
        self.scheme.check_losses(self.losses)
        if self.init_from_teacher is not None and not scheme.starts_near_teacher:
            which = " and ".join(n for n, c in schemes().items() if c.starts_near_teacher)
            raise ValueError(f"init_from_teacher starts the student near the teacher it learns from, which only "
                             f"schemes {which} have (not '{name}'); remove it or change scheme.name")
        return self


class RunConfig(_Strict):
    seed: int = Field(0, ge=0, lt=2**32, description="random seed of every stage (numpy and scikit-learn take "
                      "seeds below 2**32)")
    output_dir: LaxPath = Path("runs/kdkit")
    data: SerializeAsAny[ClassificationSource] = Field(
        default_factory=lambda: source_options(None), description="a data source by name with its keys, e.g. "
        "{name: fashion_mnist, train_size: 5000}; each source's options are declared beside its loader in "
        "kdkit.data (default: mnist1d)",
    )
    train: TrainSettings = Field(default_factory=TrainSettings)
    teacher: ModelConfig
    student: ModelConfig
    distill: DistillConfig = Field(default_factory=DistillConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig, description="search space of `kdkit tune`")

    @field_validator("data", mode="before")
    @classmethod
    def _source_by_name(cls, raw: Any) -> ClassificationSource:
        return source_options(raw)  # the registry's options model of the data source `raw` names

    def settings(self, stage: str) -> TrainSettings:
        """Train settings of 'teacher', 'student' (alone) or 'distill', with the run seed unless overridden."""
        merged = {**self.train.model_dump(), "seed": self.seed}
        merged.update(self.teacher.train if stage == "teacher" else self.student.train)
        where = f"{stage if stage == 'teacher' else 'student'}.train"
        if stage == "distill":
            merged.update(self.distill.train)
            where = "distill.train" if self.distill.train else where
        try:
            return TrainSettings(**merged)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, TrainSettings, prefix=where)) from None


def parse_config(raw: Any) -> RunConfig:
    if not isinstance(raw, dict):
        raise ConfigError("config error: the file must hold a mapping of keys (teacher:, student:, ...)")
    try:
        cfg = RunConfig(**raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, RunConfig)) from None
    for stage in ("teacher", "student", "distill"):
        cfg.settings(stage)  # validate the overrides now, not after the teacher has trained
    if cfg.distill.cache_teacher and cfg.data.random_views():
        raise ConfigError("config error at distill.cache_teacher: teacher outputs cannot be cached while data.augment "
                          "or data.random_crop change the images at random; set distill.cache_teacher: false, or "
                          "keep them for a fixed set of views per image with distill.cached_views: 8")
    if cfg.settings("distill").augment:
        over = ("distill.train" if "augment" in cfg.distill.train else
                "student.train" if "augment" in cfg.student.train else "train")  # the key the distill stage reads
        if cfg.distill.cache_teacher:  # a cached output is the teacher's answer to another view (Beyer et al. 2022)
            raise ConfigError(f"config error at distill.cache_teacher: teacher outputs cannot be cached while "
                              f"{over}.augment changes the inputs every epoch; set distill.cache_teacher: false, or "
                              "keep them for a fixed set of views per sample with distill.cached_views: 8")
        if any(t.get("name") == "token_kd" for t in cfg.distill.losses):
            raise ConfigError(f"config error at {over}.augment: token_kd distils per-token predictions, and "
                              "augmentation applies to float inputs (images, signals), not token ids; remove it")
    terms = cfg.distill.keep_terms()  # built once here; the run trains with these
    _check_cached_features(cfg, terms)
    _check_cached_views(cfg, terms)
    others = [("teacher", cfg.teacher), *cfg.distill.scheme.models()]
    _check_param_types([("student", cfg.student), *others])
    for where, model in others:
        if model.quantize is not None:
            raise ConfigError(f"config error at {where}: quantize applies to the student only (both student rows "
                              "train quantization-aware); remove it here")
    if not type(cfg.distill.scheme).trains_on_data and cfg.distill.use_transfer and cfg.data.transfer_size:
        raise ConfigError(f"config error at data.transfer_size: scheme '{cfg.distill.scheme.name}' distils on "
                          "synthetic inputs only; set data.transfer_size: 0")
    if not type(cfg.distill.scheme).trains_on_data and getattr(cfg.data, "unlabelled_file", None) is not None:
        raise ConfigError(f"config error at data.unlabelled_file: scheme '{cfg.distill.scheme.name}' distils on "
                          "synthetic inputs only; remove data.unlabelled_file")
    return cfg


def _check_cached_features(cfg: RunConfig, terms: list[Any]) -> None:
    """cache_teacher keeps one row per sample, but an hf: teacher on raw text pads each batch to its own longest
    text, so its tapped features (hidden states, attention, values: one entry per token) change length from batch to
    batch and cannot be stored per sample; its logits can."""
    if not (cfg.distill.cache_teacher and cfg.data.keeps_raw_text()):
        return
    if not any(m.name.startswith("hf:") for m in (cfg.teacher, *(m for _, m in cfg.distill.scheme.models()))):
        return
    from kdkit.terms import tapped_paths

    for index, term in enumerate(terms):
        paths = sorted(tapped_paths([term])[1])
        if paths:
            raise ConfigError(f"config error at distill.cache_teacher: term '{term.name}' (distill.losses.{index}) "
                              f"reads the hf: teacher's {paths[0]}, one entry per token, whose length changes with "
                              "each batch of raw text, so it cannot be cached per sample; set distill.cache_teacher: "
                              "false (logit terms such as kd can be cached)")


def _check_cached_views(cfg: RunConfig, terms: list[Any]) -> None:
    """cached_views stores the teacher's class probabilities per view, not its features; and it needs something that
    makes views differ."""
    if cfg.distill.cached_views is None:
        return
    from kdkit.terms import tapped_paths

    for index, term in enumerate(terms):
        paths = sorted(tapped_paths([term])[1])
        if paths:
            raise ConfigError(f"config error at distill.cached_views: term '{term.name}' (distill.losses.{index}) "
                              f"reads the teacher's {paths[0]}, but the views keep only its class probabilities; "
                              "use logit terms (kd, dkd, dist, ...) or remove distill.cached_views")
    if not cfg.data.random_views() and not cfg.settings("distill").augment:
        raise ConfigError("config error at distill.cached_views: nothing augments the training data, so every view "
                          "would be the same; add train.augment (or data.augment / data.random_crop for an image "
                          "folder), or use distill.cache_teacher for fixed inputs")


def _check_param_types(models: list[tuple[str, ModelConfig]]) -> None:
    """Each built-in model's params against its builder's type hints (`hidden: [true]` is not a width)."""
    from kdkit.config.arguments import check_arguments
    from kdkit.models import MODELS

    for where, model in models:
        if model.name in MODELS:
            check_arguments(MODELS[model.name], model.params, f"{where}.params")


def load_config(path: str | Path, overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> RunConfig:
    """The config in `path`, with command-line `overrides` ("train.epochs=30", see kdkit.config.overrides) and
    `output_dir` applied before it is validated."""
    from kdkit.config.overrides import apply_overrides

    raw = apply_overrides(read_config(path), overrides, output_dir, _defaults)
    cfg = parse_config(raw)
    check_devices(cfg)
    return cfg


def _defaults(raw: dict[str, Any]) -> dict[str, Any]:
    return parse_config(raw).model_dump(mode="json")


def dump_config(cfg: RunConfig, path: str | Path) -> None:
    from kdkit.config.yaml import dump_yaml  # quotes '1e-3'-like strings, so `kdkit train` reads them back as such
    from kdkit.io.checkpoint import write_atomic

    write_atomic(path, dump_yaml(cfg.model_dump(mode="json")))
