"""YAML configs of language-model runs (`kdkit train configs/lm_addition.yaml`), validated with pydantic.

A config is a language-model config when its `data.name` is a language-model source of kdkit.data; `kdkit train` then
runs kdkit.families.lm.run instead of the classification pipeline. Models (`lm_transformer`, `hf_lm:<folder>`), train
settings and the tune section are the ones every family shares (kdkit.models.spec.ModelConfig,
kdkit.trainer.settings.TrainSettings, kdkit.tune.config.TuneConfig); what differs is the data (LM sources and their
options) and the schemes:

    offline          (the default) token-level KD on the labelled data with distill.losses (e.g. ce + forward_kl)
    sequence_level   the teacher answers `data.n_transfer` extra prompts (greedy, or sampled at `temperature`),
                     and the student learns the labelled pairs (their own answers) plus the teacher's answers with
                     distill.losses (Kim & Rush 2016; with a token divergence too, their word-level variant); a
                     config with no transfer prompts is refused, since it would be offline under another name
    on_policy        GKD (Agarwal et al. 2024): in a share `lam` of the steps the student samples its answers and
                     the teacher scores them; distill.losses: one token divergence, optionally ce
    topk_cache       the teacher's top-`k` log-probabilities per token are written once under the run directory
                     and read back by index, the rest of its mass compared by `tail_samples` (8) draws from the
                     teacher's tail (`tail: sampled`, unbiased, the default), as one bucket (`bucket`, a lower
                     bound) or spread evenly (`uniform`); distill.losses: one token divergence at T = 1, optionally ce
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SerializeAsAny, ValidationError, field_validator, model_validator

from kdkit.config.types import LaxPath, StrictModel
from kdkit.config.validation import format_validation_error
from kdkit.data.source import SourceOptions, source_options
from kdkit.errors import ConfigError
from kdkit.models.spec import ModelConfig
from kdkit.schemes.lm_common import LMSchemeOptions
from kdkit.schemes.registry import LM, scheme_options, schemes
from kdkit.trainer.settings import TrainSettings
from kdkit.tune.config import TuneConfig


class LMDistillConfig(StrictModel):
    scheme: SerializeAsAny[LMSchemeOptions] = Field(
        default_factory=lambda: scheme_options(None, LM), description="who writes the student's targets: "
        "{name: <scheme>, ...its keys}; the language-model schemes of kdkit.schemes (default: offline)")

    @field_validator("scheme", mode="before")
    @classmethod
    def _scheme_by_name(cls, raw: Any) -> LMSchemeOptions:
        # the registry's options model of the language-model scheme `raw` names
        return scheme_options(raw, LM)  # type: ignore[return-value]
    losses: list[dict[str, Any]] = Field(default_factory=lambda: [{"name": "ce"}, {"name": "forward_kl", "T": 1.0}],
                                         description="loss terms, e.g. [{name: ce}, {name: jsd, beta: 0.5}]")
    train: dict[str, Any] = Field(default_factory=dict, description="overrides for the distilled student")


class LMTuneConfig(TuneConfig):
    """`kdkit tune` of a language-model config: trials distil the student, scored on the validation split."""

    metric: Literal["nll", "accuracy", "agreement", "predictive_kl"] = Field(
        "nll", description="validation metric of the distilled student: per-token NLL (the log of perplexity), token "
        "accuracy, next-token agreement with the teacher or per-token KL")
    prune: bool = Field(False, description="language-model trials are not pruned (each runs its epochs)")


class LMRunConfig(StrictModel):
    seed: int = Field(0, ge=0, lt=2**32)
    output_dir: LaxPath = Path("runs/lm")
    data: SerializeAsAny[SourceOptions] = Field(description="a language-model source of kdkit.data "
                                                "(synthetic_addition, lm_files) with its keys")
    train: TrainSettings = Field(default_factory=lambda: TrainSettings(monitor="nll"))
    teacher: ModelConfig
    student: ModelConfig
    distill: LMDistillConfig = Field(default_factory=LMDistillConfig)
    tune: LMTuneConfig = Field(default_factory=lambda: LMTuneConfig(), description="search space of `kdkit tune`")

    @field_validator("data", mode="before")
    @classmethod
    def _source_by_name(cls, raw: Any) -> SourceOptions:
        return source_options(raw, LM)  # the registry's options model of the source `raw` names

    @model_validator(mode="before")
    @classmethod
    def _lm_monitor(cls, raw: Any) -> Any:
        # a language model's validation macro F1 averages over every token of the vocabulary: NLL is the default
        if isinstance(raw, dict) and isinstance(raw.get("train", {}), dict) and "monitor" not in raw.get("train", {}):
            raw = {**raw, "train": {**raw.get("train", {}), "monitor": "nll"}}
        return raw

    def settings(self, stage: str) -> TrainSettings:
        """Train settings of 'teacher', 'student' (alone) or 'distill', with the run seed unless overridden."""
        merged = {**self.train.model_dump(), "seed": self.seed}
        merged.update(self.teacher.train if stage == "teacher" else self.student.train)
        if stage == "distill":
            merged.update(self.distill.train)
        try:
            return TrainSettings(**merged)
        except ValidationError as err:
            where = {"teacher": "teacher.train", "student": "student.train"}.get(stage, "distill.train")
            raise ConfigError(format_validation_error(err, TrainSettings, prefix=where)) from None


def is_lm_config(raw: Any) -> bool:
    """True when the raw YAML mapping's data.name is a language-model source."""
    from kdkit.data.source import sources

    data = raw.get("data") if isinstance(raw, dict) else None
    return isinstance(data, dict) and data.get("name") in sources(LM)


def parse_lm_config(raw: dict[str, Any]) -> LMRunConfig:
    """Validate a language-model config; every mistake is one ConfigError line naming the key."""
    try:
        cfg = LMRunConfig(**raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, LMRunConfig)) from None
    for stage in ("teacher", "student", "distill"):
        cfg.settings(stage)
    from kdkit.terms import build_terms

    build_terms(cfg.distill.losses)
    scheme = cfg.distill.scheme.name
    cfg.distill.scheme.check_config(cfg.distill.losses)  # what the scheme asks of the terms (its own file says)
    if getattr(cfg.data, "n_transfer", 0) and not type(cfg.distill.scheme).writes_answers:
        which = [n for n, c in schemes(LM).items() if c.writes_answers]
        raise ConfigError(f"config error at data.n_transfer: transfer prompts have no answers until the teacher "
                          f"writes them, which only scheme {', '.join(which)} does (not '{scheme}'); set "
                          f"data.n_transfer: 0 or distill.scheme.name: {which[0]}")
    if type(cfg.distill.scheme).writes_answers and not getattr(cfg.data, "n_transfer", 0):
        raise ConfigError(f"config error at distill.scheme: scheme '{scheme}' has the teacher answer data.n_transfer "
                          f"extra prompts and this config has none ({cfg.data.name}, n_transfer 0), so it would be "
                          "offline distillation; set data.n_transfer > 0 (synthetic_addition) or "
                          "distill.scheme.name: offline")
    for where, model in (("teacher", cfg.teacher), ("student", cfg.student)):
        if model.quantize is not None:
            raise ConfigError(f"config error at {where}.quantize: language-model runs do not train int8 students; "
                              "remove it")
    return cfg


def load_lm_config(path: str | Path, overrides: Sequence[str] = (),
                   output_dir: str | Path | None = None) -> LMRunConfig | None:
    """The language-model config in `path`, or None when the file is not one (then
    kdkit.families.classification.config reads it), with command-line `overrides` and `output_dir` applied before it
    is validated (see kdkit.config.overrides)."""
    from kdkit.config.devices import check_devices
    from kdkit.config.overrides import apply_overrides
    from kdkit.config.yaml import read_config

    raw = read_config(path)
    if not is_lm_config(raw):
        return None
    raw = apply_overrides(raw, overrides, output_dir, lambda raw: parse_lm_config(raw).model_dump(mode="json"))
    cfg = parse_lm_config(raw)
    check_devices(cfg)  # the devices it trains on exist here (the same check as a classification config's)
    return cfg


def dump_lm_config(cfg: LMRunConfig, path: str | Path) -> None:
    import yaml

    from kdkit.io.checkpoint import write_atomic

    write_atomic(path, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


__all__ = ["LMRunConfig", "dump_lm_config", "is_lm_config", "load_lm_config",
           "parse_lm_config"]
