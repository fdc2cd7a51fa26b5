"""YAML run configs, validated with pydantic. Every error becomes one line naming the key and the fix."""

from __future__ import annotations

import difflib
import math
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    Field,
    PositiveInt,
    PrivateAttr,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from kdkit.config.types import LaxPath, StrictModel
from kdkit.data.source import ClassificationSource, SourceOptions, source_options
from kdkit.errors import ConfigError
from kdkit.families.classification.built_terms import BuiltTerms, terms_of
from kdkit.models.spec import ModelConfig
from kdkit.schemes.registry import SchemeOptions, scheme_options, schemes
from kdkit.trainer.settings import TrainSettings

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


# the losses that config.yaml files of runs made before KD's defaults moved into the loss (issue 15) hold when their
# config gave none: not a default, only recognised, so mutual learning runs of that time still load
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


class SearchRange(_Strict):
    """One hyperparameter's range for `kdkit tune`: low/high (log: sample on a log scale) or a list of choices."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = Field(False, description="draw whole numbers (epochs, widths, batch sizes)")
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _range_or_choices(self) -> SearchRange:
        if self.choices is not None:
            if self.low is not None or self.high is not None or not self.choices:
                raise ValueError("give either choices: [...] (not empty) or low and high, not both")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"give low < high (or choices: [...]); got low {self.low}, high {self.high}")
        elif self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0; got {self.low}")
        elif self.integer and math.ceil(self.low) > math.floor(self.high):
            raise ValueError(f"no whole number lies in [{self.low}, {self.high}]")
        return self


class TuneConfig(_Strict):
    """`kdkit tune`: an Optuna search over config values, each trial scored on the validation split."""

    trials: PositiveInt = Field(20, description="number of trials (each distils the student once)")
    metric: Literal["accuracy", "macro_f1", "nll", "ece", "agreement", "predictive_kl"] = Field(
        "macro_f1", description="validation metric of the distilled student that the search optimises"
    )
    prune: bool = Field(True, description="stop a trial early when its validation metric, epoch by epoch, is worse "
                        "than the median of earlier trials at the same epoch (Optuna's MedianPruner)")
    space: dict[str, SearchRange] | None = Field(
        None, description="dotted config paths and their ranges, e.g. distill.losses.kd.T (a term by name) or "
        "distill.losses.0.T (by position): {low: 1, high: 10, log: true}; by default T and alpha of the scheme (see "
        "kdkit.families.classification.tune.default_space)",
    )

    alone: bool = Field(True, description="give the student alone the same number of trials over its own train "
                        "settings (tune.alone_space), print its best validation score beside the best distilled "
                        "trial, and write each row's own best settings into best.yaml (kdkit.tune.alone)")
    alone_space: dict[str, SearchRange] | None = Field(
        None, description="the student alone's search: student.train.* paths only (lr, epochs, augment, ...); "
        "default: student.train.lr from a tenth to 10x its value, and student.train.augment with or without the "
        "configured ops when there are any",
    )

    @field_validator("alone_space")
    @classmethod
    def _alone_paths(cls, space: dict[str, SearchRange] | None) -> dict[str, SearchRange] | None:
        # the same student, built the same way: the alone row may only train differently
        other = sorted(p for p in space or {} if not p.startswith("student.train."))
        if other:
            raise ValueError(f"{', '.join(other)}: the student alone's search changes how it trains, not what it "
                             "is; give student.train.* paths (lr, epochs, augment, weight_decay, ...)")
        return space

    @field_validator("space")
    @classmethod
    def _student_side_paths(cls, space: dict[str, SearchRange] | None) -> dict[str, SearchRange] | None:
        # the data and the teacher are built once for the whole search: a trial cannot change them
        fixed = sorted(p for p in space or {} if p.split(".")[0] in ("seed", "output_dir", "data", "teacher", "tune"))
        if fixed:
            raise ValueError(f"{', '.join(fixed)}: the data and the teacher are fixed during a search (built once, "
                             "shared by every trial); search student.* and distill.* paths, or run one search each")
        return space


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


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class that owns the key at `loc` (for 'did you mean' hints)."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None)
        # an optional section (e.g. `BoundaryConfig | None`) owns its keys like a plain one
        models = [a for a in (typing.get_args(ann) or (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(models) != 1:
            return None
        model = models[0]
    return model


_UNION_MEMBER = (r"(str|int|float|bool|none|constrained-\w+|(list|tuple|dict|set|literal|function-\w+|is-instance|"
                 r"lax-or-strict|nullable|constrained-\w+)\[.*\])")


def _is_union_member(part: Any) -> bool:
    import re

    return isinstance(part, str) and re.fullmatch(_UNION_MEMBER, part) is not None


def format_validation_error(err: ValidationError, schema: type[BaseModel], prefix: str = "") -> str:
    """First pydantic error as one line: 'config error at teacher.modle: unknown key; did you mean 'model'?'."""
    first = err.errors()[0]
    # pydantic names the member of a union that failed (`student.str`, `image_size.tuple[...]`): not a config key
    loc = tuple(p for p in first["loc"] if not _is_union_member(p))
    key = ".".join(str(p) for p in ((prefix,) if prefix else ()) + loc)
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    if first["type"] == "extra_forbidden":
        owner = _model_at(schema, loc)
        # a scheme's options: any scheme's keys (the scheme a config names is picked by the registry)
        known = (owner.known_keys() if owner and issubclass(owner, (SchemeOptions, SourceOptions))
                 else list(owner.model_fields) if owner else [])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(known)}"
        return f"config error at {key}: unknown key; {hint}{more}"
    if first["type"] == "missing":
        return f"config error at {key}: required key is missing; add it to the config{more}"
    msg = first["msg"].removeprefix("Value error, ")
    value = first.get("input")
    shown = f" (got {value!r})" if not isinstance(value, (dict, list)) and value is not None else ""
    return f"config error at {key}: {msg}{shown}{more}"


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
    _check_devices(cfg)
    return cfg


def _defaults(raw: dict[str, Any]) -> dict[str, Any]:
    return parse_config(raw).model_dump(mode="json")


def read_config(path: str | Path) -> Any:
    """The YAML of a config file, unvalidated (a language-model config, kdkit.families.lm.config, is read here too)."""
    from kdkit.config.yaml import DuplicateKeyError, load_yaml
    from kdkit.io.textfile import read_text

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config error: {path} is a directory; give the YAML file, e.g. configs/demo.yaml")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = read_text(path, ConfigError)  # not UTF-8 or binary: one line naming the line and the fix
    try:
        raw = load_yaml(text)
    except DuplicateKeyError as err:
        raise ConfigError(f"config error: {path}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None)
        raise ConfigError(f"config error: {path} is not valid YAML{where}{f' ({problem})' if problem else ''}") \
            from None
    return raw


def _check_devices(cfg: RunConfig) -> None:
    """The devices a config trains on exist on this machine (checked for train/tune, not when a run is re-read)."""
    from kdkit.config.devices import missing_device

    for where, given in (("train", cfg.train.model_dump()), ("teacher.train", cfg.teacher.train),
                         ("student.train", cfg.student.train), ("distill.train", cfg.distill.train)):
        why = missing_device(given["device"]) if "device" in given else None
        if why:
            raise ConfigError(f"config error at {where}.device: {why}")


def dump_config(cfg: RunConfig, path: str | Path) -> None:
    from kdkit.config.yaml import dump_yaml  # quotes '1e-3'-like strings, so `kdkit train` reads them back as such
    from kdkit.io.checkpoint import write_atomic

    write_atomic(path, dump_yaml(cfg.model_dump(mode="json")))
