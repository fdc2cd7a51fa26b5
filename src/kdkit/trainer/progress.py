"""Progress that shows whether or not there is a terminal.

rich's bars redraw one line in place; with output redirected to a file or a CI log they show nothing until
the end, so a ten-minute run looks hung. Without a terminal, `fit` uses `PlainProgress` instead: plain lines
that a log file keeps, one when a stage starts, one at the end of every epoch and one every `EVERY_SECONDS`
within a long epoch, each with the stage, epoch/epochs, step, elapsed time, an ETA and the loss.

`PlainProgress` answers the part of rich's `Progress` interface the trainer uses (`add_task`, `advance`,
`update`, context manager), so the training loop does not care which one it drives.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

EVERY_SECONDS = 10.0  # at most one mid-epoch line per this many seconds: enough to see it move, not a flood


def is_terminal() -> bool:
    """Whether stdout is a terminal, as rich decides it (FORCE_TERMINAL, TTY_COMPATIBLE and friends honoured)."""
    from rich.console import Console

    return Console(file=sys.stdout).is_terminal


def clock(seconds: float) -> str:
    """h:mm:ss, as rich's elapsed column shows it."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _number(value: Any) -> float | None:
    """A loss given as a float or a 0-d tensor (read only when a line is printed: one device sync per line)."""
    if value is None:
        return None
    return float(value.item() if hasattr(value, "item") else value)


class PlainProgress:
    """Plain-text progress lines for one or more stages (tasks); see the module docstring."""

    def __init__(self, epochs: int = 1, file: TextIO | None = None, every: float | None = None,
                 unit: str = "epoch") -> None:
        self.epochs = max(1, epochs)
        self.unit = unit  # what one pass over the data is called: an epoch of training, a pass that fills a cache
        self.file = file if file is not None else sys.stdout
        self.every = EVERY_SECONDS if every is None else every
        self.tasks: dict[int, dict[str, Any]] = {}

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        for task in self.tasks.values():
            if exc[0] is None and not task["closed"]:
                self._print(f"{task['name']}: done, {task['done']}/{task['total']} steps in "
                            f"{clock(time.monotonic() - task['start'])}")
                task["closed"] = True

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int:
        task_id = len(self.tasks)
        total = int(total or 0)
        now = time.monotonic()
        self.tasks[task_id] = {"name": description, "total": total, "done": 0, "first": 0, "start": now,
                               "printed": now, "loss": None, "closed": False}
        per_epoch = max(1, total // self.epochs)
        self._print(f"{description}: {self.epochs} {self.unit}{'s' if self.epochs > 1 else ''} x {per_epoch} steps")
        return task_id

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def update(self, task_id: int, *, completed: float | None = None, advance: float | None = None,
               status: str | None = None, **fields: Any) -> None:
        task = self.tasks[task_id]
        if completed is not None:  # a resumed stage starts part-way: its rate counts from there
            task["done"] = task["first"] = int(completed)
        if advance:
            task["done"] += int(advance)
        if "loss" in fields:
            task["loss"] = fields["loss"]
        now = time.monotonic()
        if status:  # the end of an epoch: always a line, with the epoch's metrics
            self._line(task, now, status)
        elif advance and now - task["printed"] >= self.every:
            loss = _number(task["loss"])
            self._line(task, now, "" if loss is None else f"loss {loss:.4f}")

    def _line(self, task: dict[str, Any], now: float, tail: str) -> None:
        per_epoch = max(1, task["total"] // self.epochs)
        done, total = task["done"], task["total"]
        epoch = min(self.epochs, done // per_epoch + (0 if done % per_epoch == 0 and done else 1))
        step = done - (epoch - 1) * per_epoch
        elapsed = now - task["start"]
        rate_steps = done - task["first"]
        eta = clock(elapsed / rate_steps * (total - done)) if rate_steps > 0 else "?"
        self._print(f"{task['name']}: {self.unit} {epoch}/{self.epochs}, step {step}/{per_epoch}, elapsed "
                    f"{clock(elapsed)}, ETA {eta}" + (f", {tail}" if tail else ""))
        task["printed"] = now

    def _print(self, line: str) -> None:
        print(line, file=self.file, flush=True)


class FoldProgress:
    """One plain line per fitted fold model (tabular distillation): stage, fold k/K, rows, the fold's seconds,
    elapsed time and an ETA from the mean fold time. Silent when `verbose` is 0."""

    def __init__(self, stage: str, folds: int, verbose: int = 1, file: TextIO | None = None) -> None:
        self.stage, self.folds, self.verbose = stage, max(1, folds), verbose
        self.file = file
        self.start = self.last = time.monotonic()

    def fold_done(self, fold: int, rows: int) -> None:
        now = time.monotonic()
        took, elapsed = now - self.last, now - self.start
        self.last = now
        if self.verbose <= 0:
            return
        eta = clock(elapsed / (fold + 1) * (self.folds - fold - 1))
        print(f"{self.stage}: fold {fold + 1}/{self.folds} fitted on {rows:,} rows in {took:.1f} s, elapsed "
              f"{clock(elapsed)}, ETA {eta}", file=self.file if self.file is not None else sys.stdout, flush=True)
