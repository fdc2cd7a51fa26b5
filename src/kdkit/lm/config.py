"""YAML configs of language-model runs (`kdkit train configs/lm_addition.yaml`), validated with pydantic.

A config is a language-model config when its `data.name` is a source of kdkit.data.LM_SOURCES; `kdkit train`
then runs kdkit.lm.run instead of the classification pipeline. Models (`lm_transformer`, `hf_lm:<folder>`) and
train settings are the classification config's own (kdkit.config.ModelConfig, TrainSettings); what differs is
the data (LM sources and their options) and the schemes:

    offline          token-level KD on the labelled data with distill.losses (e.g. ce + forward_kl)
    sequence_level   the teacher answers the labelled prompts' extra `n_transfer` prompts (greedy, or sampled at
                     `temperature`), and the student learns the labelled pairs plus those answers with
                     distill.losses (Kim & Rush 2016; with a token divergence too, their word-level variant)
    on_policy        GKD (Agarwal et al. 2024): in a share `lam` of the steps the student samples its answers and
                     the teacher scores them; distill.losses: one token divergence, optionally ce
    topk_cache       the teacher's top-`k` log-probabilities per token are written once under the run directory
                     and read back by index; distill.losses: one token divergence at T = 1, optionally ce
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SerializeAsAny, ValidationError, field_validator, model_validator

from kdkit.config import ModelConfig, _Strict, format_validation_error
from kdkit.errors import ConfigError
from kdkit.schema_types import LaxPath
from kdkit.schemes.registry import LM, SchemeOptions, scheme_options
from kdkit.settings import TrainSettings

DIVERGENCES = ("forward_kl", "reverse_kl", "jsd", "tv")
# the options of each LM data source, with their defaults (None: required)
SOURCE_KEYS: dict[str, dict[str, Any]] = {
    "synthetic_addition": {"digits": 3, "n_train": 2000, "n_transfer": 0, "n_val": 500, "n_test": 1000,
                           "reverse": True},
    "lm_files": {"train_file": None, "test_file": None, "val_file": None, "seq_len": 128, "mode": "packed",
                 "prompt_key": "prompt", "response_key": "response", "text_key": "text", "val_fraction": 0.1},
}

class LMDataConfig(_Strict):
    name: str = Field(description="synthetic_addition (generated) or lm_files (your .txt / .jsonl)")
    digits: int | None = Field(None, ge=1, description="synthetic_addition: digits per operand")
    n_train: int | None = Field(None, ge=1, description="synthetic_addition: labelled training problems")
    n_transfer: int | None = Field(None, ge=0, description="synthetic_addition: extra prompts the teacher answers "
                                   "(scheme sequence_level only)")
    n_val: int | None = Field(None, ge=1, description="synthetic_addition: validation problems")
    n_test: int | None = Field(None, ge=1, description="synthetic_addition: test problems (exact match)")
    reverse: bool | None = Field(None, description="synthetic_addition: write the sum least significant digit first")
    train_file: LaxPath | None = Field(None, description="lm_files: .txt (one text per line) or .jsonl "
                                       "({prompt, response} or {text} rows)")
    test_file: LaxPath | None = Field(None, description="lm_files: test texts, same format")
    val_file: LaxPath | None = Field(None, description="lm_files: validation texts (else val_fraction of train)")
    seq_len: int | None = Field(None, ge=2, description="lm_files: tokens per row")
    mode: Literal["packed", "padded"] | None = Field(None, description="lm_files: raw text packed or one per row")
    prompt_key: str | None = Field(None, description="lm_files: JSONL key of the prompt")
    response_key: str | None = Field(None, description="lm_files: JSONL key of the response")
    text_key: str | None = Field(None, description="lm_files: JSONL key of a raw text")
    val_fraction: float | None = Field(None, gt=0, lt=1, description="lm_files: share of train held out")

    @model_validator(mode="after")
    def _keys_of_this_source(self) -> LMDataConfig:
        from kdkit.data import LM_SOURCES

        if self.name not in LM_SOURCES:
            close = difflib.get_close_matches(self.name, list(LM_SOURCES), n=1)
            raise ValueError(f"unknown language-model data source '{self.name}'; "
                             + (f"did you mean '{close[0]}'?" if close else f"choose one of: {', '.join(LM_SOURCES)}"))
        own = SOURCE_KEYS[self.name]
        stray = sorted(k for k in type(self).model_fields if k != "name" and k not in own
                       and getattr(self, k) is not None)
        if stray:
            raise ValueError(f"{', '.join(stray)} do{'es' if len(stray) == 1 else ''} not apply to data source "
                             f"'{self.name}' (it takes: {', '.join(own)}); remove "
                             + ("it" if len(stray) == 1 else "them"))
        for key, default in own.items():
            if getattr(self, key) is None:
                setattr(self, key, default)
        if self.name == "lm_files":
            for key in ("train_file", "test_file", "val_file"):
                path = getattr(self, key)
                if path is None and key != "val_file":
                    raise ValueError(f"lm_files needs {key} (.txt or .jsonl)")
                if path is not None and not Path(path).is_file():
                    raise ValueError(f"{key}: file not found: {path}")
        return self

    def options(self) -> dict[str, Any]:
        """The source's own options (the keys SOURCE_KEYS gives it)."""
        return {key: getattr(self, key) for key in SOURCE_KEYS[self.name]}


class LMDistillConfig(_Strict):
    scheme: SerializeAsAny[SchemeOptions] = Field(
        default_factory=lambda: scheme_options(None, LM), description="who writes the student's targets: "
        "{name: <scheme>, ...its keys}; the language-model schemes of kdkit.schemes (default: sequence_level)")

    @field_validator("scheme", mode="before")
    @classmethod
    def _scheme_by_name(cls, raw: Any) -> SchemeOptions:
        return scheme_options(raw, LM)  # the registry's options model of the language-model scheme `raw` names
    losses: list[dict[str, Any]] = Field(default_factory=lambda: [{"name": "ce"}, {"name": "forward_kl", "T": 1.0}],
                                         description="loss terms, e.g. [{name: ce}, {name: jsd, beta: 0.5}]")
    train: dict[str, Any] = Field(default_factory=dict, description="overrides for the distilled student")


class LMRunConfig(_Strict):
    seed: int = Field(0, ge=0, lt=2**32)
    output_dir: LaxPath = Path("runs/lm")
    data: LMDataConfig
    train: TrainSettings = Field(default_factory=lambda: TrainSettings(monitor="nll"))
    teacher: ModelConfig
    student: ModelConfig
    distill: LMDistillConfig = Field(default_factory=LMDistillConfig)

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
    from kdkit.data import LM_SOURCES

    data = raw.get("data") if isinstance(raw, dict) else None
    return isinstance(data, dict) and data.get("name") in LM_SOURCES


def divergence_terms(losses: list[dict[str, Any]], scheme: str) -> tuple[dict[str, Any], float]:
    """on_policy / topk_cache: (the one token-divergence term, the ce weight or 0) from distill.losses."""
    names = [str(t.get("name")) for t in losses]
    divs = [t for t in losses if t.get("name") in DIVERGENCES]
    others = [n for n in names if n not in (*DIVERGENCES, "ce")]
    if len(divs) != 1 or others or names.count("ce") > 1:
        raise ConfigError(f"config error at distill.losses: scheme '{scheme}' takes one token divergence "
                          f"({', '.join(DIVERGENCES)}) and optionally ce, e.g. [{{name: jsd, beta: 0.5}}, {{name: ce, "
                          f"weight: 0.5}}]; got {names}")
    ce = [t for t in losses if t.get("name") == "ce"]
    return dict(divs[0]), float(ce[0].get("weight", 1.0)) if ce else 0.0


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
    if scheme in ("on_policy", "topk_cache"):
        div, _ = divergence_terms(cfg.distill.losses, scheme)
        if scheme == "topk_cache" and float(div.get("T", 1.0)) != 1.0:
            raise ConfigError("config error at distill.losses: the top-k cache holds the teacher at temperature 1; "
                              "give T: 1 (or leave T out)")
    if cfg.data.name == "synthetic_addition" and cfg.data.n_transfer and scheme != "sequence_level":
        raise ConfigError(f"config error at data.n_transfer: transfer prompts have no answers until the teacher "
                          f"writes them, which only scheme sequence_level does (not '{scheme}'); set "
                          "data.n_transfer: 0 or distill.scheme.name: sequence_level")
    for where, model in (("teacher", cfg.teacher), ("student", cfg.student)):
        if model.quantize is not None:
            raise ConfigError(f"config error at {where}.quantize: language-model runs do not train int8 students; "
                              "remove it")
    return cfg


def load_lm_config(path: str | Path) -> LMRunConfig | None:
    """The language-model config in `path`, or None when the file is not one (then kdkit.config reads it)."""
    from kdkit.config import _check_devices, read_config

    raw = read_config(path)
    if not is_lm_config(raw):
        return None
    cfg = parse_lm_config(raw)
    _check_devices(cfg)  # the devices it trains on exist here (the same check as a classification config's)
    return cfg


def dump_lm_config(cfg: LMRunConfig, path: str | Path) -> None:
    import yaml

    from kdkit.checkpoint import write_atomic

    write_atomic(path, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


__all__ = ["LMRunConfig", "divergence_terms", "dump_lm_config", "is_lm_config", "load_lm_config",
           "parse_lm_config"]
