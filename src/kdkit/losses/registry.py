"""Losses by name. A loss file declares its options as a :class:`LossOptions` subclass next to the loss: its `name` a
Literal, its keys with their types and defaults, and `loss`, the ``nn.Module`` they build. The class registers itself
when it is created and the registry imports every module of kdkit.losses once, so adding a loss is adding its file:

    class AtOptions(LossOptions):
        name: Literal["at"] = "at"
        p: float = 2.0
        loss = AttentionTransfer

    loss_options("at", {"p": 3.0})          # validated once here, one-line errors naming the key
    build_loss("at", p=3.0)                 # AttentionTransfer(p=3.0)

The options hold the types (strict: ``T: "hot"``, ``T: .nan`` and ``standardize: "yes"`` are refused); the loss's
own __init__ keeps the checks of its formula (T > 0, alpha in [0, 1]), so a loss built in Python checks them too.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from pydantic import ValidationError
from torch import nn

from kdkit.config.named import NamedOptions, Registry
from kdkit.config.validation import format_validation_error
from kdkit.errors import ConfigError

FAMILY = "loss"  # losses have one family; the registry's families separate classification and LM schemes


def _elsewhere(name: str, family: str) -> str:  # one family: never asked
    return f"'{name}' is not a loss"


LOSS_REGISTRY = Registry("kdkit.losses", "loss", "distill.losses", {}, _elsewhere)


class LossOptions(NamedOptions):
    """A loss's keys in a ``distill.losses`` term (the term's own keys, weight, student, ... are not among them).
    Subclasses set `name: Literal["..."] = "..."`, their keys with the loss's defaults, and `loss`."""

    registry = LOSS_REGISTRY
    family: ClassVar[str] = FAMILY
    loss: ClassVar[type[nn.Module]]

    def arguments(self) -> dict[str, Any]:
        """The keyword arguments of the loss."""
        return {key: getattr(self, key) for key in type(self).model_fields if key != "name"}

    def build(self) -> nn.Module:
        """The loss module; ValueError when the loss's own checks refuse a value."""
        return type(self).loss(**self.arguments())


def loss_classes() -> dict[str, type[LossOptions]]:
    """Every registered loss's options model, by name."""
    return LOSS_REGISTRY.of(FAMILY)  # type: ignore[return-value]


def loss_options(name: Any, arguments: Mapping[str, Any], where: str | None = None) -> LossOptions:
    """The validated options of loss `name`; ConfigError naming `where`.KEY for the first value refused."""
    known = loss_classes()
    if not isinstance(name, str) or name not in known:
        raise ConfigError(f"unknown loss '{name}'; choose one of: {', '.join(sorted(known))}")
    cls = known[name]
    accepted = sorted(k for k in cls.model_fields if k != "name")
    unknown = sorted(set(arguments) - set(accepted))
    if unknown:
        raise ConfigError(f"loss '{name}' got unknown argument(s) {unknown}; it accepts: {accepted or 'none'}")
    try:
        return cls.model_validate({**arguments, "name": name})
    except ValidationError as err:
        line = format_validation_error(err, cls, prefix=where or "")
        raise ConfigError(line if where else f"loss '{name}': {line.removeprefix('config error at ')}") from None


def build_loss(name: str, **arguments: Any) -> nn.Module:
    """Instantiate a registered loss by name; unknown names, keys or values give a one-line ConfigError."""
    options = loss_options(name, arguments)
    try:
        return options.build()
    except (TypeError, ValueError) as err:
        raise ConfigError(f"loss '{name}': {err}") from None


class LossView(Mapping[str, type[nn.Module]]):
    """The registered loss classes by name, read-only (``kdkit.losses.LOSSES``)."""

    def __getitem__(self, name: str) -> type[nn.Module]:
        return loss_classes()[name].loss

    def __iter__(self) -> Iterator[str]:
        return iter(loss_classes())

    def __len__(self) -> int:
        return len(loss_classes())
