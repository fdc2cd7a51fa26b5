"""Data sources by name. A data module declares each source it loads as a :class:`SourceOptions` subclass beside its
loader (its `name` a Literal, its keys with their defaults and checks, and :meth:`~SourceOptions.load`); the registry
finds them by importing each module of kdkit.data once, so adding a source is adding its class to a data module
(or a new module). A config's `data` section is validated by the options of the source it names:

    options = source_options({"name": "fashion_mnist", "train_size": 5000})   # validated, one-line errors
    bundle = options.load(seed)                                               # a DataBundle

The data modules import scikit-learn, pandas, PIL and transformers inside the functions that use them, so finding
the sources (and reporting a config mistake) costs no more than importing torch.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from kdkit.config.named import NamedOptions, Registry

CLASSIFICATION, LM = "classification", "lm"
DEFAULT_SOURCE = {CLASSIFICATION: "mnist1d"}  # a language-model config names its source


def _elsewhere(name: str, family: str) -> str:
    if family == LM:  # kdkit train routes these to kdkit.families.lm.config before this schema sees them
        return (f"'{name}' is a language-model source: run this config with `kdkit train` (other commands do not "
                "take language-model configs yet)")
    return f"'{name}' is a classification data source; a language-model config needs synthetic_addition or lm_files"


SOURCES = Registry("kdkit.data", "data source", "data", DEFAULT_SOURCE, _elsewhere)


class SourceOptions(NamedOptions):
    """A data source's keys under ``data``. Subclasses set `name: Literal["..."] = "..."`, their keys and load."""

    registry = SOURCES
    family: ClassVar[str] = CLASSIFICATION  # LM: a language-model source (kdkit.families.lm.config)

    def random_views(self) -> bool:
        """Whether a sample's input changes from epoch to epoch (random augmentation), so that teacher outputs
        cannot be cached per sample."""
        return False

    def keeps_raw_text(self) -> bool:
        """Whether batches carry the raw text for each model to tokenize its own way."""
        return False

    def load(self, *args: Any) -> Any:
        raise NotImplementedError(f"data source '{self.name}' has no loader")


class ClassificationSource(SourceOptions):
    """Keys every classification source takes."""

    transfer_size: int = Field(0, ge=0, description="extra unlabelled samples for the teacher to label")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="share of train held out when there is no val split")

    def load(self, seed: int) -> Any:
        raise NotImplementedError(f"data source '{self.name}' has no loader")


class GeneratedSource(ClassificationSource):
    """A data set made by a function ``generator(seed=, val_fraction=, transfer_size=) -> DataBundle``."""

    generator: ClassVar[Any] = None  # a staticmethod

    def load(self, seed: int) -> Any:
        return type(self).generator(seed=seed, val_fraction=self.val_fraction, transfer_size=self.transfer_size)


def sources(family: str = CLASSIFICATION) -> dict[str, type[SourceOptions]]:
    """The registered data sources of `family`, by name."""
    return SOURCES.of(family)  # type: ignore[return-value]


def source_options(raw: Any, family: str = CLASSIFICATION) -> SourceOptions:
    """The options of the data source `raw` names (see kdkit.config.named.Registry.options)."""
    return SOURCES.options(raw, family)  # type: ignore[return-value]
