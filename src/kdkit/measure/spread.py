"""Median and interquartile range of timings, and how cost numbers are shown: a speed-up is a fact only when
the two latency spreads do not overlap; otherwise it is printed as ``~1.1x?`` (uncertain). Pure Python, so tables
and reports format cost without importing torch; kdkit.measure.cost does the measuring.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

UNCERTAIN = "~{:.1f}x?"  # a speed-up whose latency spreads overlap
CERTAIN = "{:.1f}x"


@dataclass(frozen=True)
class Spread:
    """Median and quartiles of repeated measurements (q1 <= median <= q3)."""

    median: float
    q1: float
    q3: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        """Quartiles by linear interpolation between the sorted values (one value gives a zero-width spread)."""
        if not values:
            raise ValueError("no measurements")
        if len(values) == 1:
            return cls(values[0], values[0], values[0])
        q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
        return cls(median, q1, q3)

    def overlaps(self, other: Spread) -> bool:
        """Whether the two interquartile ranges share any value."""
        return self.q1 <= other.q3 and other.q1 <= self.q3


def speedup(reference: Mapping[str, Any], row: Mapping[str, Any]) -> dict[str, Any]:
    """`row`'s speed-up over `reference` at batch 1 from the median latencies, with the range the quartiles allow
    (``speedup_low`` .. ``speedup_high``) and ``speedup_certain``: False when the two latency IQRs overlap
    (the reference's own row, 1.0x by definition, is certain)."""
    ref = Spread(reference["latency_ms"], reference["latency_ms_q1"], reference["latency_ms_q3"])
    own = Spread(row["latency_ms"], row["latency_ms_q1"], row["latency_ms_q3"])
    return {"speedup": ref.median / own.median, "speedup_low": ref.q1 / own.q3, "speedup_high": ref.q3 / own.q1,
            "speedup_certain": reference is row or not ref.overlaps(own)}


def speedup_text(value: float, certain: bool | None) -> str:
    """'7.2x' for a measured speed-up, '~1.1x?' when the latency spreads overlap (None: an older run without
    spreads, shown as it was)."""
    return (UNCERTAIN if certain is False else CERTAIN).format(value)


def spread_text(value: float, q1: float | None, q3: float | None, fmt: str) -> str:
    """'median (q1-q3)', or the median alone for a number saved without quartiles."""
    if q1 is None or q3 is None:
        return format(value, fmt)
    return f"{format(value, fmt)} ({format(q1, fmt)}-{format(q3, fmt)})"


# what a table or report adds for cost timed with the quick plan (kdkit.measure.cost.Plan.quick)
QUICK_NOTE = (" Timed with the quick plan (few short rounds): noisier than the full plan; `kdkit evaluate RUN_DIR "
              "--cost-only` re-times it.")


def conditions_text(conditions: Mapping[str, Any]) -> str:
    """One sentence on how the cost numbers were measured, for tables and reports."""
    load = conditions.get("load_before")
    after = conditions.get("load_after")
    loads = "" if load is None else (f"; load average (1 min) {load[0]:.2f} before, "
                                     f"{after[0]:.2f} after" if after else f"; load average (1 min) {load[0]:.2f}")
    quick = QUICK_NOTE if conditions.get("plan") == "quick" else ""
    return (f"Latency and throughput: median (interquartile range) over {conditions.get('rounds', '?')} interleaved "
            f"rounds after warm-up, {conditions.get('threads', '?')} torch thread(s) on "
            f"{conditions.get('cpu_count', '?')} CPU cores{loads}.{quick}"
            " A speed-up shown as ~Nx? is uncertain: the latency interquartile ranges of the model and the teacher "
            "overlap.")
