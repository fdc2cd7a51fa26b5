"""Cost numbers that can be compared: latency at batch 1 and throughput at batch 256 of several models, measured
side by side so that a change in machine load hits every model alike.

One wall-time reading of a small model on a shared CPU swings by an order of magnitude (another process wakes up,
the OS migrates a thread), and a model timed a minute after another is timed on a different machine, in effect.
So every model is warmed up first, then all are timed in interleaved rounds (round r starts with model r, so no
model is always first), under one fixed torch thread count; each number is a median with its interquartile range
(IQR), and the load average before and after is written down with the thread count.

A speed-up (reference latency / model latency, from medians) counts as measured only when the two latency IQRs do
not overlap; otherwise it is shown as ``~3.0x?``: the models are not distinguishable at this noise level.
"""

from __future__ import annotations

import io
import itertools
import os
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn

from kdkit.measure.spread import Spread, speedup

LATENCY_BATCH = 1
THROUGHPUT_BATCH = 256

def model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters (or buffers) live; CPU for a model with neither, e.g. a converted int8 model."""
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _is_quantized(model: nn.Module) -> bool:
    return any(isinstance(v, tuple) or (isinstance(v, torch.Tensor) and v.is_quantized)
               for v in model.state_dict().values())


def count_params(model: nn.Module) -> int:
    """Parameters; for an int8 model (whose packed weights are no longer nn.Parameters) the elements of its
    weight and bias tensors, packed or not."""
    if not _is_quantized(model):
        return sum(p.numel() for p in model.parameters())
    total = 0
    for key, value in model.state_dict().items():
        if key.rsplit(".", 1)[-1] in ("weight", "bias", "_packed_params"):
            total += sum(t.numel() for t in (value if isinstance(value, tuple) else (value,))
                         if isinstance(t, torch.Tensor))
    return total


def weights_size_bytes(model: nn.Module) -> int:
    """Size of the model's state dict serialized as safetensors (what kdkit writes to disk); safetensors cannot
    hold quantized tensors, so an int8 model is measured as ``torch.save(state_dict)`` bytes instead."""
    if _is_quantized(model):
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        return buffer.getbuffer().nbytes
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    return len(safetensors_bytes(state))


@torch.no_grad()
def _timings(
    model: nn.Module, example: torch.Tensor, repeats: int, warmup: int, budget_s: float = 3.0
) -> list[float]:
    """Wall times of `repeats` forward passes after `warmup`; stops early (after at least 3) once `budget_s`
    is spent, so a big model on a CPU is timed in seconds, not minutes."""
    model.eval()
    sync = torch.cuda.synchronize if example.is_cuda else (lambda: None)
    start = time.perf_counter()
    for _ in range(warmup):
        model(example)
        sync()
        if time.perf_counter() - start > budget_s:  # one slow pass is warm-up enough
            break
    times: list[float] = []
    while len(times) < repeats and (len(times) < 3 or sum(times) < budget_s):
        start = time.perf_counter()
        model(example)
        sync()
        times.append(time.perf_counter() - start)
    return times


def _batch(model: nn.Module, input_shape: Sequence[int], batch_size: int, example: torch.Tensor | None):
    """`batch_size` inputs: Gaussian noise of `input_shape`, or copies of the first row of `example` (needed where
    noise is not a valid input, e.g. token ids)."""
    device = model_device(model)
    if example is None:
        return torch.randn(batch_size, *input_shape, device=device)
    return example[:1].to(device).expand(batch_size, *example.shape[1:]).contiguous()


def latency_ms(
    model: nn.Module, input_shape: Sequence[int], batch_size: int = 1, repeats: int = 50, warmup: int = 10,
    example: torch.Tensor | None = None,
) -> float:
    """Median wall time in milliseconds of one forward pass at `batch_size`, after warm-up."""
    batch = _batch(model, input_shape, batch_size, example)
    return 1000.0 * statistics.median(_timings(model, batch, repeats, warmup))


def throughput(
    model: nn.Module, input_shape: Sequence[int], batch_size: int = 256, repeats: int = 20, warmup: int = 3,
    example: torch.Tensor | None = None,
) -> float:
    """Samples per second at `batch_size`, from the median of repeated timed forward passes."""
    batch = _batch(model, input_shape, batch_size, example)
    return batch_size / statistics.median(_timings(model, batch, repeats, warmup))


def cost_report(
    model: nn.Module, input_shape: Sequence[int], quick: bool = False, example: torch.Tensor | None = None
) -> dict[str, Any]:
    """Parameters, size on disk, latency at batch 1 (ms) and throughput at batch 256 (samples/s), each timing a
    median with its quartiles (``latency_ms_q1`` ...); `example`: a real input batch to time with instead of
    Gaussian noise. To compare models, time them together with :func:`measure` (interleaved rounds)."""
    rows, _ = measure({"model": model}, input_shape, example, Plan.quick() if quick else None)
    return rows["model"]


@dataclass(frozen=True)
class Plan:
    """How much timing: `rounds` interleaved rounds, each timing every model `repeats` times per batch size, and
    more until the round has lasted `min_round_s` (a fast model's ten passes take a millisecond, which one
    preemption by another process spoils); fewer once a round's share of `budget_s` is spent, never fewer than
    one. `warmup` untimed passes first."""

    rounds: int = 7
    latency_repeats: int = 10
    throughput_repeats: int = 3
    warmup: int = 10
    budget_s: float = 4.0  # per model and batch size, over all rounds: a large CPU model takes seconds, not minutes
    min_round_s: float = 0.05

    @classmethod
    def quick(cls) -> Plan:
        """`kdkit train --quick-timing`, `evaluate --quick` and `demo --quick`: 3 short rounds, noisier numbers."""
        return cls(rounds=3, latency_repeats=2, throughput_repeats=1, warmup=2, budget_s=1.0, min_round_s=0.0)

    @property
    def name(self) -> str:
        """'full' (the default plan), 'quick' (:meth:`quick`) or 'custom', as results.json records it."""
        return "full" if self == Plan() else "quick" if self == Plan.quick() else "custom"


@contextmanager
def fixed_threads(threads: int | None) -> Iterator[int]:
    """Run the block with torch's intra-op thread count set to `threads` (default: the current count, which
    OMP_NUM_THREADS sets), then restore it; yields the count in force."""
    before = torch.get_num_threads()
    count = before if threads is None else threads
    if count < 1:
        raise ValueError(f"threads must be >= 1, got {count}")
    torch.set_num_threads(count)
    try:
        yield count
    finally:
        torch.set_num_threads(before)


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # not available on every platform
        return None


@torch.no_grad()
def _time(model: nn.Module, batch: torch.Tensor, passes: int, deadline: float, min_seconds: float = 0.0) -> list[float]:
    """Wall seconds of `passes` forward passes or more, until `min_seconds` have passed, at least one, stopping once
    `deadline` has passed."""
    sync = torch.cuda.synchronize if batch.is_cuda else (lambda: None)
    times: list[float] = []
    until = time.perf_counter() + min_seconds
    while (len(times) < passes or time.perf_counter() < until) and (not times or time.perf_counter() < deadline):
        start = time.perf_counter()
        model(batch)
        sync()
        times.append(time.perf_counter() - start)
    return times


def measure(
    models: Mapping[str, nn.Module], input_shape: Sequence[int], example: torch.Tensor | None = None,
    plan: Plan | None = None, threads: int | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Parameters, size on disk, latency at batch 1 (ms) and throughput at batch 256 (samples/s) of every model, each
    timing a median with its quartiles (``latency_ms``, ``latency_ms_q1``, ``latency_ms_q3``, and the same for
    ``throughput``); and the conditions of the measurement (threads, load, rounds ...) for results.json.

    `example`: a real input to copy into the batches instead of Gaussian noise of `input_shape` (token ids need
    one). Every model is measured on its own device (an int8 model stays on the CPU)."""
    plan = plan or Plan()
    roles = list(models)
    batches = {role: {b: _batch(m, input_shape, b, example) for b in (LATENCY_BATCH, THROUGHPUT_BATCH)}
               for role, m in models.items()}
    repeats = {LATENCY_BATCH: plan.latency_repeats, THROUGHPUT_BATCH: plan.throughput_repeats}
    times: dict[str, dict[int, list[float]]] = {role: {b: [] for b in repeats} for role in roles}
    load_before = _load()
    started = time.perf_counter()
    with fixed_threads(threads) as count:
        for role, model in models.items():  # warm-up: first-call allocations and kernel choices are not timed
            model.eval()
            for b in repeats:
                _time(model, batches[role][b], plan.warmup if b == LATENCY_BATCH else max(1, plan.warmup // 5),
                      time.perf_counter() + plan.budget_s / 4)
        share = plan.budget_s / plan.rounds
        for r in range(plan.rounds):
            for role in roles[r % len(roles):] + roles[:r % len(roles)]:
                for b, passes in repeats.items():
                    times[role][b] += _time(models[role], batches[role][b], passes, time.perf_counter() + share,
                                            plan.min_round_s)
    rows = {}
    for role, model in models.items():
        latency = Spread.of([1000.0 * t for t in times[role][LATENCY_BATCH]])
        rate = Spread.of([THROUGHPUT_BATCH / t for t in times[role][THROUGHPUT_BATCH]])
        rows[role] = {
            "params": count_params(model), "size_bytes": weights_size_bytes(model),
            "latency_ms": latency.median, "latency_ms_q1": latency.q1, "latency_ms_q3": latency.q3,
            "throughput": rate.median, "throughput_q1": rate.q1, "throughput_q3": rate.q3,
            "timed_passes": {str(b): len(t) for b, t in times[role].items()},
        }
    conditions = {
        "threads": count, "cpu_count": os.cpu_count(), "load_before": load_before, "load_after": _load(),
        "plan": plan.name, "interleaved": True, "rounds": plan.rounds, "warmup": plan.warmup,
        "min_round_s": plan.min_round_s, "budget_s": plan.budget_s,
        "repeats": {"latency": plan.latency_repeats, "throughput": plan.throughput_repeats},
        "batch_sizes": {"latency": LATENCY_BATCH, "throughput": THROUGHPUT_BATCH},
        "devices": {role: str(model_device(m)) for role, m in models.items()},
        "seconds": round(time.perf_counter() - started, 2), "torch": torch.__version__,
        "measured": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    return rows, conditions


def compare(
    models: Mapping[str, nn.Module], input_shape: Sequence[int], example: torch.Tensor | None = None,
    quick: bool = False, threads: int | None = None, reference: str = "teacher",
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """:func:`measure` (the quick plan when `quick`), plus every row's speed-up over the `reference` row (see
    kdkit.measure.spread.speedup: uncertain when the latency spreads overlap)."""
    rows, conditions = measure(models, input_shape, example, Plan.quick() if quick else None, threads)
    for row in rows.values():
        row.update(speedup(rows[reference], row))
    return rows, conditions
