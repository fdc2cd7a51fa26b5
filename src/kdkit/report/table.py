"""The comparison table: teacher, student alone, distilled student; generalization, fidelity and cost."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from kdkit.measure.spread import speedup_text, spread_text

# key -> (header, formatter)
COLUMNS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "model": ("model", str),
    "params": ("params", lambda v: f"{v:,}"),
    "size_bytes": ("size (KB)", lambda v: f"{v / 1024:,.1f}"),
    "latency_ms": ("latency b=1 (ms)", lambda v: f"{v:.3f}"),
    "throughput": ("throughput b=256 (/s)", lambda v: f"{v:,.0f}"),
    "speedup": ("speed-up", lambda v: f"{v:.1f}x"),
    "accuracy": ("accuracy", lambda v: f"{v:.4f}"),
    "macro_f1": ("macro F1", lambda v: f"{v:.4f}"),
    "nll": ("NLL", lambda v: f"{v:.4f}"),
    "ece": ("ECE", lambda v: f"{v:.4f}"),
    "agreement": ("agreement", lambda v: f"{v:.4f}"),
    "predictive_kl": ("pred. KL", lambda v: f"{v:.4f}"),
}
SPREAD_FORMATS = {"latency_ms": ".3f", "throughput": ",.0f"}  # the same digits as COLUMNS, for median and quartiles


def cell(key: str, row: dict[str, Any]) -> str:
    """One cell: latency and throughput as 'median (q1-q3)' when the row holds quartiles (see kdkit.measure.spread), a
    speed-up whose latency spreads overlap as '~1.1x?', '-' for a missing number."""
    value = row.get(key)
    if value is None:
        return "-"
    if key in SPREAD_FORMATS:
        return spread_text(value, row.get(f"{key}_q1"), row.get(f"{key}_q3"), SPREAD_FORMATS[key])
    if key == "speedup":
        return speedup_text(value, row.get("speedup_certain"))
    return COLUMNS[key][1](value)


def _cells(row: dict[str, Any], keys: Sequence[str]) -> list[str]:
    return [cell(k, row) for k in keys]


def _keys(rows: Sequence[dict[str, Any]]) -> list[str]:
    return [k for k in COLUMNS if any(r.get(k) is not None for r in rows)]


def to_markdown(rows: Sequence[dict[str, Any]]) -> str:
    keys = _keys(rows)
    lines = ["| " + " | ".join(COLUMNS[k][0] for k in keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_cells(r, keys)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def print_table(rows: Sequence[dict[str, Any]], title: str = "", console: Console | None = None,
                caption: str | None = None) -> None:
    """The rows as a table; `caption` (e.g. how cost was measured) is printed under it. On a terminal, cells wrap
    instead of being cut, so a spread such as '3,812,360 (3,785,741-4,221,162)' is never shown half; in a log
    file or a pipe, no cell wraps at all (see print_unwrapped)."""
    keys = _keys(rows)
    table = Table(title=title or None, caption=caption, caption_justify="left")
    for k in keys:
        table.add_column(COLUMNS[k][0], justify="left" if k == "model" else "right", no_wrap=k == "model",
                         overflow="fold")
    for r in rows:
        table.add_row(*_cells(r, keys))
    print_unwrapped(table, console or Console())


def print_unwrapped(table: Table, console: Console) -> None:
    """Print `table` on a terminal as it fits; elsewhere (a log file, a pipe, CI) every row on one line, however
    wide: a log has no width to fit, and a figure split over lines ('(6.638-7.012 /', ') ms') reads as two."""
    if console.is_terminal:
        console.print(table)
        return
    for column in table.columns:
        column.no_wrap = True
    title, caption = table.title, table.caption  # rich wraps both to the table's width: lines of their own instead
    table.title = table.caption = None
    natural = Measurement.get(console, console.options.update_width(10**6), table).maximum
    wide = Console(width=max(natural, console.width), file=console.file, quiet=console.quiet,
                   color_system=console.color_system, highlight=False)
    for part in (title, table, caption):
        if part is not None:
            wide.print(part, soft_wrap=part is not table)
