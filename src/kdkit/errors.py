"""Errors a user can act on. The CLI prints their message as one line and exits with code 2; warnings a user can
act on (KdkitWarning) it prints as one line `warning: ...`, without Python's file, line and source excerpt."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class KdkitError(ValueError):
    """Base class: the message says what is wrong and how to fix it."""


class ConfigError(KdkitError):
    """A YAML config or an argument is invalid."""


class DataError(KdkitError):
    """Input data is missing, empty or inconsistent."""


class ModelError(KdkitError):
    """Models do not fit together (e.g. different numbers of classes) or cannot be built/loaded."""


class NonFiniteLossError(KdkitError):
    """The loss became NaN or infinite; training stopped and the last good checkpoint was kept."""


class RunDirError(KdkitError):
    """A run directory is incomplete or from an unknown format."""


class StorageError(KdkitError):
    """Writing to disk failed (read-only, full, no permission); what was saved before is kept."""


class KdkitWarning(UserWarning):
    """Something the user should know and may act on (skipped files, values the model never saw); not an error."""


@contextmanager
def plain_warnings() -> Iterator[None]:
    """While it lasts, a KdkitWarning shows as one line `warning: <message>` on stderr (other libraries' warnings
    keep Python's format): the file and line of kdkit's source that raised it mean nothing to a user."""
    shown = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:
        if issubclass(category, KdkitWarning):
            print(f"warning: {message}", file=file or sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown

