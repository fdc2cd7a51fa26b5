"""Errors a user can act on. The CLI prints their message as one line and exits with code 2."""


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
