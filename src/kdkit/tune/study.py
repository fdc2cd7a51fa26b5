"""Opening an Optuna study that several workers share (one database, e.g. PostgreSQL).

Workers started together on a fresh database race to create Optuna's tables: all but one fail with an error from
the database (a type or table that already exists). The tables exist by then, so opening again succeeds; this
module retries a few times instead of letting a worker die of it (found by the two-worker PostgreSQL test)."""

from __future__ import annotations

import random
import time
from typing import Any


def open_study(optuna: Any, attempts: int = 5, **kwargs: Any) -> Any:
    """optuna.create_study(load_if_exists=True, **kwargs), retried after a lost race to create the schema.
    A bad URL or missing driver (ImportError, ValueError) is not retried."""
    for attempt in range(attempts):
        try:
            return optuna.create_study(load_if_exists=True, **kwargs)
        except (ImportError, ValueError):
            raise
        except Exception:  # sqlalchemy's IntegrityError / ProgrammingError of the concurrent schema creation
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 + random.random() * 0.5)  # noqa: S311 - jitter, not security
    raise AssertionError("unreachable")
