"""Early stopping and the best epoch: the monitored value of each epoch, whether it improved on the best so far, and
whether `patience` epochs have passed without improvement."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EarlyStopping:
    """The best monitored value so far and the epochs since it (`higher`: larger values are better; `patience`:
    None never stops)."""

    higher: bool
    patience: int | None = None
    best_value: float | None = None
    since_best: int = 0

    def observe(self, value: float, always: bool = False) -> bool:
        """Record an epoch's value; True when it is the new best (`always`: count it as the best whatever it is,
        e.g. without validation data the last epoch is the best one)."""
        improved = self.best_value is None or (value > self.best_value if self.higher else value < self.best_value)
        if improved or always:
            self.best_value, self.since_best = value, 0
            return True
        self.since_best += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.since_best >= self.patience
