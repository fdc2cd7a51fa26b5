"""Data sources. Every source returns a :class:`DataBundle` of map-style datasets yielding ``(x, y)``;
unlabelled transfer-set rows carry ``y = -1``. ``SOURCES`` maps a config's ``data.name`` to a loader."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kdkit.data.builtin import BUILTIN, UNLABELLED, DataBundle, Indexed, load_builtin, make_loader
from kdkit.data.image_folder import load_image_folder
from kdkit.errors import ConfigError

# name -> function(data_config, seed) -> DataBundle
SOURCES: dict[str, Callable[[Any, int], DataBundle]] = {
    name: (lambda cfg, seed, _n=name: load_builtin(
        _n, seed=seed, val_fraction=cfg.val_fraction, transfer_size=cfg.transfer_size))
    for name in BUILTIN
}
SOURCES["image_folder"] = load_image_folder


def build_data(cfg: Any, seed: int) -> DataBundle:
    """The DataBundle a config's ``data`` section describes."""
    if cfg.name not in SOURCES:
        raise ConfigError(f"unknown data source '{cfg.name}'; choose one of: {', '.join(sorted(SOURCES))}")
    return SOURCES[cfg.name](cfg, seed)


__all__ = ["BUILTIN", "SOURCES", "UNLABELLED", "DataBundle", "Indexed", "build_data", "load_builtin", "make_loader"]
