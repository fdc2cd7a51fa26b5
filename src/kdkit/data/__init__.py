"""Data sources. Every source returns a :class:`DataBundle` of map-style datasets yielding ``(x, y)``;
unlabelled transfer-set rows carry ``y = -1`` (kdkit.labels.UNLABELLED).

Each source is declared beside its loader as a ``SourceOptions`` subclass (kdkit.data.source): its name, its keys
and how it loads. A config's ``data`` section is validated by those options and ``build_data`` calls their
``load``. Adding a source is adding its class; nothing here lists them. The names below are imported on first use
(PEP 562), so that ``import kdkit.data`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from kdkit.errors import ConfigError

# names re-exported from the submodules, imported on first use (PEP 562)
_EXPORTS: dict[str, str] = {
    "UNLABELLED": "kdkit.labels", "DataBundle": "kdkit.data.builtin", "Indexed": "kdkit.data.loaders",
    "make_loader": "kdkit.data.loaders", "RawTextBundle": "kdkit.data.raw_text",
    "load_text_files_raw": "kdkit.data.raw_text", "load_rotten_tomatoes": "kdkit.data.rotten_tomatoes",
    "TextBundle": "kdkit.data.text_files", "Vocabulary": "kdkit.data.vocabulary",
    "load_text_files": "kdkit.data.text_files", "SourceOptions": "kdkit.data.source",
    "source_options": "kdkit.data.source", "sources": "kdkit.data.source",
}


def load_builtin(name: str, **options: Any) -> Any:
    """A generated data set by name, with its generator's own keyword arguments (e.g. ``n_train`` of the generated
    reviews), beyond what a config's ``data`` section exposes."""
    from kdkit.data.source import GeneratedSource, sources

    generated = {n: c for n, c in sources().items() if issubclass(c, GeneratedSource)}
    if name not in generated:
        raise ConfigError(f"unknown data set '{name}'; generated sets: {', '.join(sorted(generated))}")
    return generated[name].generator(**options)


def build_data(cfg: Any, seed: int) -> Any:
    """The DataBundle a config's ``data`` section describes (its validated options, or the mapping itself)."""
    from pydantic import ValidationError

    from kdkit.data.source import SourceOptions, source_options

    try:
        options = source_options(cfg)
    except ValidationError as err:  # a mapping from Python with a mistake: one line, as from a config file
        from kdkit.config.validation import format_validation_error

        raise ConfigError(format_validation_error(err, SourceOptions, prefix="data")) from None
    except ValueError as err:
        raise ConfigError(f"config error at data: {err}") from None
    return options.load(seed)


def build_lm_data(cfg: Any, seed: int, tokenizer: Any = None) -> Any:
    """(LMBundle, transfer prompts or None) of a language-model config's ``data`` section."""
    from kdkit.data.source import LM, source_options

    return source_options(cfg, LM).load(seed, tokenizer)


def __getattr__(name: str) -> Any:
    if name in ("SOURCES", "LM_SOURCES", "GENERATED"):  # the registered names, for listing and membership tests
        from kdkit.data.source import LM, GeneratedSource, sources

        if name == "GENERATED":
            return tuple(n for n, c in sources().items() if issubclass(c, GeneratedSource))
        return tuple(sources(LM if name == "LM_SOURCES" else "classification"))
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kdkit.data' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)


__all__ = ["GENERATED", "LM_SOURCES", "SOURCES", "build_data", "build_lm_data", "load_builtin", *sorted(_EXPORTS)]
