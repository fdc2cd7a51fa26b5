"""Every number kdkit reports comes from here: generalization, fidelity to the teacher, and cost.

Classification metrics take logits (N, C) and integer labels (N,) as numpy arrays or tensors.
"""

from __future__ import annotations

import io
import itertools
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn

from kdkit.labels import UNLABELLED

ArrayLike = np.ndarray | torch.Tensor


def _np(a: ArrayLike) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def log_softmax(logits: ArrayLike) -> np.ndarray:
    z = _np(logits).astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(logits: ArrayLike) -> np.ndarray:
    return np.exp(log_softmax(logits))


def accuracy(logits: ArrayLike, labels: ArrayLike) -> float:
    return float((_np(logits).argmax(axis=1) == _np(labels)).mean())


def macro_f1(logits: ArrayLike, labels: ArrayLike, num_classes: int | None = None) -> float:
    """Unweighted mean of per-class F1 over all classes (absent classes count as 0, like scikit-learn)."""
    labels = _np(labels)
    classes = np.arange(num_classes if num_classes is not None else _np(logits).shape[1])
    from sklearn.metrics import f1_score  # here: scikit-learn (with scipy) takes longer to import than torch

    return float(f1_score(labels, _np(logits).argmax(axis=1), labels=classes, average="macro", zero_division=0))


def nll(logits: ArrayLike, labels: ArrayLike) -> float:
    """Mean negative log-likelihood of the true class (nats)."""
    labels = _np(labels).astype(int)
    return float(-log_softmax(logits)[np.arange(len(labels)), labels].mean())


def ece(logits: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> float:
    """Expected calibration error with equal-width confidence bins (Guo et al. 2017).

    ECE = sum_b |B_b|/N * |acc(B_b) - conf(B_b)|; bins are (k/n, (k+1)/n], the first one closed at 0.
    """
    probs = softmax(logits)
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == _np(labels)
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            total += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(total)


def agreement(student_logits: ArrayLike, teacher_logits: ArrayLike) -> float:
    """Top-1 agreement: fraction of samples where student and teacher predict the same class."""
    return float((_np(student_logits).argmax(axis=1) == _np(teacher_logits).argmax(axis=1)).mean())


def predictive_kl(teacher_logits: ArrayLike, student_logits: ArrayLike) -> float:
    """Mean over samples of KL(p_teacher || p_student) at temperature 1 (nats)."""
    return float(per_sample_kl(teacher_logits, student_logits).mean())


def per_sample_kl(teacher_logits: ArrayLike, student_logits: ArrayLike) -> np.ndarray:
    log_p, log_q = log_softmax(teacher_logits), log_softmax(student_logits)
    return (np.exp(log_p) * (log_p - log_q)).sum(axis=1)


def classification_report(
    logits: ArrayLike, labels: ArrayLike, teacher_logits: ArrayLike | None = None
) -> dict[str, float]:
    """Generalization metrics, plus fidelity metrics when the teacher's logits are given.

    Per-token logits (N, L, C) with labels (N, L) (sequence labelling) are scored over the labelled tokens: every
    token whose label is not UNLABELLED (-1) counts as one prediction."""
    logits, labels = _np(logits), _np(labels)
    if logits.ndim > 2:
        keep = labels.reshape(-1) != UNLABELLED
        logits, labels = logits.reshape(-1, logits.shape[-1])[keep], labels.reshape(-1)[keep]
        if teacher_logits is not None:
            teacher_logits = _np(teacher_logits).reshape(-1, logits.shape[-1])[keep]
    out = {
        "accuracy": accuracy(logits, labels),
        "macro_f1": macro_f1(logits, labels),
        "nll": nll(logits, labels),
        "ece": ece(logits, labels),
    }
    if teacher_logits is not None:
        out["agreement"] = agreement(logits, teacher_logits)
        out["predictive_kl"] = predictive_kl(teacher_logits, logits)
    return out


# ----------------------------------------------------------------------------------------------- cost


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
    Gaussian noise. To compare models, time them together with kdkit.measure.cost.measure (interleaved rounds)."""
    from kdkit.measure.cost import Plan, measure  # kdkit.measure.cost builds on this module

    rows, _ = measure({"model": model}, input_shape, example, Plan.quick() if quick else None)
    return rows["model"]
