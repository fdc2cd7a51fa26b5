"""Models by name. ``build_model("cnn1d", input_shape, num_classes, width=64)``.

Built-in families live one per file; a name with a prefix (``torchvision:resnet18``, ``timm:...``) is resolved by
the matching entry in ``RESOLVERS``.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from torch import nn

from kdkit.errors import ConfigError, KdkitError, ModelError
from kdkit.models.cnn import CNN1d, CNN2d, build_cnn1d, build_cnn2d
from kdkit.models.init import check_same_architecture, teacher_near_init
from kdkit.models.lm import LMTransformer, build_lm_transformer, resolve_hf_lm
from kdkit.models.lstm import TextBiLSTM, build_text_bilstm
from kdkit.models.mlp import MLP, build_mlp
from kdkit.models.text import (
    BagOfWords,
    TextCNN,
    TextGRU,
    TextTransformer,
    build_text_bow,
    build_text_cnn,
    build_text_gru,
    build_text_transformer,
    resolve_hf,
)
from kdkit.models.timm_weights import check_timm_weights
from kdkit.models.tiny import SmallCNN, StridedCNN, TinyCNN, build_small_cnn, build_strided_cnn, build_tiny_cnn
from kdkit.models.vision import check_timm_name, check_torchvision_name, resolve_timm, resolve_torchvision

Builder = Callable[..., nn.Module]

MODELS: dict[str, Builder] = {
    "mlp": build_mlp,
    "cnn1d": build_cnn1d,
    "cnn2d": build_cnn2d,
    "tiny_cnn": build_tiny_cnn,
    "small_cnn": build_small_cnn,
    "strided_cnn": build_strided_cnn,  # downsamples at once: fast at 100k parameters
    "text_transformer": build_text_transformer,
    "text_bow": build_text_bow,
    "text_cnn": build_text_cnn,
    "text_gru": build_text_gru,
    "text_bilstm": build_text_bilstm,  # Tang et al. 2019's student
    "lm_transformer": build_lm_transformer,  # causal LM: logits (N, L, V), num_classes = vocabulary
}

def _local_folder(prefix: str) -> Callable[[str], None]:
    def check(path: str) -> None:
        if not Path(path).is_dir():
            raise ModelError(f"{prefix}:{path} is not a local directory; give a folder written by save_pretrained "
                             "(config.json + weights), nothing is downloaded")

    return check


# prefix -> function(name_after_prefix): refuses a name the resolver cannot build, without building anything
NAME_CHECKS: dict[str, Callable[[str], None]] = {
    "torchvision": check_torchvision_name, "timm": check_timm_name, "hf": _local_folder("hf"),
    "hf_lm": _local_folder("hf_lm"),
}

# prefix -> function(name_after_prefix, weights): refuses named weights that cannot be had (an unknown tag; offline,
# a file not in the cache) before any data is read
WEIGHT_CHECKS: dict[str, Callable[[str, Any], object]] = {"timm": check_timm_weights}

_SOURCE_NAMES_CHECKED: ContextVar[bool] = ContextVar("kdkit_source_names_checked", default=True)


@contextmanager
def saved_run_sources() -> Iterator[None]:
    """Within it, check_model_args leaves names within a source and model folders (NAME_CHECKS) unchecked: reading a
    saved run's config.yaml, whose names were checked when it trained, must not fail because one role's folder is
    gone; that role's build refuses it, saying which folder to put back, and the other roles still load."""
    token = _SOURCE_NAMES_CHECKED.set(False)
    try:
        yield
    finally:
        _SOURCE_NAMES_CHECKED.reset(token)


# prefix -> function(name_after_prefix, input_shape, num_classes, **kwargs)
RESOLVERS: dict[str, Callable[..., nn.Module]] = {
    "torchvision": resolve_torchvision, "timm": resolve_timm, "hf": resolve_hf,
    "hf_lm": resolve_hf_lm,  # AutoModelForCausalLM from a local folder
}


def check_model_args(name: str, kwargs: dict[str, Any]) -> None:
    """Refuse an unknown model name, source prefix, name within a source (torchvision, timm) or local model folder
    (hf, hf_lm), or builder argument (one ConfigError or ModelError line), without building: config validation
    calls this so such a mistake is reported before any data is loaded."""
    if ":" in name:
        prefix = name.partition(":")[0]
        if prefix not in RESOLVERS:
            raise ConfigError(f"unknown model source '{prefix}:'; known: {', '.join(sorted(RESOLVERS)) or 'none'}")
        if prefix in NAME_CHECKS and _SOURCE_NAMES_CHECKED.get():
            NAME_CHECKS[prefix](name.partition(":")[2])
            if prefix in WEIGHT_CHECKS and kwargs.get("weights") is not None:
                WEIGHT_CHECKS[prefix](name.partition(":")[2], kwargs["weights"])
        return
    if name not in MODELS:
        close = difflib.get_close_matches(name, list(MODELS), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(f"unknown model '{name}'; {hint}choose one of: {', '.join(sorted(MODELS))}")
    params = inspect.signature(MODELS[name]).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = set(kwargs) - set(params)
        if unknown:
            known = sorted(set(params) - {"input_shape", "num_classes"})
            raise ConfigError(f"model '{name}' got unknown argument(s) {sorted(unknown)}; it takes: {', '.join(known)}")


def build_model(name: str, input_shape: Sequence[int], num_classes: int, **kwargs: Any) -> nn.Module:
    """Build a model by registry name; unknown names or arguments give a one-line ConfigError."""
    check_model_args(name, kwargs)
    if ":" in name:
        prefix, _, rest = name.partition(":")
        return RESOLVERS[prefix](rest, input_shape, num_classes, **kwargs)
    builder = MODELS[name]
    try:
        return builder(tuple(input_shape), num_classes, **kwargs)
    except (TypeError, ValueError, RuntimeError) as err:  # a bad value caught in torch's own modules: dropout 1.5,
        # or a negative width (torch: "Trying to create tensor with negative dimension")
        if isinstance(err, KdkitError):  # already one clear line (e.g. a ModelError from a builder)
            raise
        raise ConfigError(f"model '{name}': {err}") from None


def build_from_config(spec: Any, bundle: Any) -> nn.Module:
    """The model a config entry (``name``, ``params``) names, for a DataBundle: what the data knows and the model
    needs (e.g. a text vocabulary's ``vocab_size``, in ``bundle.model_kwargs``) is filled in unless ``params`` sets
    it, for the builders that take it."""
    params = dict(spec.params)
    for key, value in getattr(bundle, "model_kwargs", {}).items():
        if key not in params and _accepts(spec.name, key):
            params[key] = value
    model = build_model(spec.name, bundle.input_shape, bundle.num_classes, **params)
    wrap = getattr(bundle, "wrap_model", None)  # e.g. raw-text data: word-id models get their tokenizer
    return wrap(spec.name, model) if wrap is not None else model


def _accepts(name: str, key: str) -> bool:
    if ":" in name:  # resolvers (torchvision:, timm:, hf:) take keyword arguments of their own; hf: takes vocab_size
        return name.startswith(("hf:", "hf_lm:"))
    builder = MODELS.get(name)
    return builder is not None and key in inspect.signature(builder).parameters


__all__ = ["MODELS", "RESOLVERS", "build_from_config", "build_model", "check_model_args",
           "saved_run_sources", "MLP", "CNN1d", "CNN2d",
           "TinyCNN", "SmallCNN", "StridedCNN", "TextTransformer", "BagOfWords", "TextCNN", "TextGRU", "TextBiLSTM",
           "LMTransformer", "check_same_architecture", "teacher_near_init"]
