"""DeepInversion: synthesise a transfer set from a frozen teacher alone (Yin et al., CVPR 2020, "Dreaming to
Distill: Data-free Knowledge Transfer via DeepInversion").

Random noise x with chosen target classes y is optimised (Adam, on x only) to minimise

    L(x) = CE(f_t(x), y)
         + bn_weight * sum_l ( ||mu_l(x) - running_mean_l||_2 + ||var_l(x) - running_var_l||_2 )
         + tv_weight * TV(x) + l2_weight * mean(x^2)
         - competition_weight * JS(softmax(f_t(x)) || softmax(f_s(x)))

mu_l and var_l (biased) are the batch statistics, per channel, of the tensor entering the teacher's BatchNorm
layer l: real data gave the running statistics, so matching them pulls x towards the data's feature
distribution. TV(x) is the mean squared difference of neighbouring values along the last axis (and the height
axis for (C, H, W) inputs). The last term is Adaptive DeepInversion's competition: with a student given, inputs
on which teacher and student disagree (high Jensen-Shannon divergence) are favoured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from kdkit.errors import ConfigError, ModelError

BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class BNStatisticsLoss:
    """Forward hooks on every BatchNorm layer (with running statistics) of `model`; after a forward pass,
    :attr:`value` is sum_l ||mu_l - running_mean_l||_2 + ||var_l - running_var_l||_2 for that pass's batch."""

    def __init__(self, model: nn.Module) -> None:
        self.layers = [m for m in model.modules() if isinstance(m, BATCHNORMS) and m.running_mean is not None]
        self._terms: list[Tensor] = []
        self._handles = [layer.register_forward_hook(self._record) for layer in self.layers]

    def _record(self, layer: nn.Module, inputs: tuple, _output: Tensor) -> None:
        x = inputs[0]
        dims = [d for d in range(x.dim()) if d != 1]  # all but the channel axis, as BatchNorm itself reduces
        mean = x.mean(dims)
        var = x.var(dims, unbiased=False)
        self._terms.append(torch.norm(mean - layer.running_mean, 2) + torch.norm(var - layer.running_var, 2))

    def reset(self) -> None:
        self._terms = []

    @property
    def value(self) -> Tensor:
        return torch.stack(self._terms).sum()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> BNStatisticsLoss:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def total_variation(x: Tensor, image: bool) -> Tensor:
    """Mean squared difference of neighbours along the last axis, plus the height axis when `image`."""
    tv = (x[..., 1:] - x[..., :-1]).pow(2).mean() if x.shape[-1] > 1 else x.sum() * 0.0
    if image and x.shape[-2] > 1:
        tv = tv + (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean()
    return tv


def js_divergence(logits_a: Tensor, logits_b: Tensor) -> Tensor:
    """Jensen-Shannon divergence between the softmax distributions, per row, averaged over the batch."""
    p, q = F.softmax(logits_a, dim=1), F.softmax(logits_b, dim=1)
    m = (0.5 * (p + q)).clamp_min(1e-12).log()
    return 0.5 * (F.kl_div(m, p, reduction="batchmean") + F.kl_div(m, q, reduction="batchmean"))


class SyntheticData(TensorDataset):
    """(inputs, target classes) made by :func:`synthesize`. `history` holds the loss parts at the first and the
    last step of every batch: dicts with keys batch, step, ce, bn, tv, l2, js, total."""

    def __init__(self, inputs: Tensor, targets: Tensor, history: list[dict[str, float]]) -> None:
        super().__init__(inputs, targets)
        self.history = history


def _check_arguments(num_samples: int, input_shape: tuple[int, ...], num_classes: int, steps: int, lr: float,
                     batch_size: int, weights: dict[str, float]) -> None:
    if num_samples < 1 or num_classes < 1 or steps < 1:
        raise ConfigError(f"synthesize needs num_samples, num_classes and steps >= 1, got {num_samples}, "
                          f"{num_classes}, {steps}")
    if batch_size < 2:  # a batch variance needs two samples
        raise ConfigError(f"synthesize batch_size must be >= 2 (BatchNorm statistics need a batch), got {batch_size}")
    if not input_shape or any(d < 1 for d in input_shape):
        raise ConfigError(f"input_shape must be one sample's positive sizes without the batch axis, e.g. (1, 8, 8); "
                          f"got {input_shape}")
    if lr <= 0:
        raise ConfigError(f"synthesize lr must be > 0, got {lr}")
    negative = [f"{k}={v}" for k, v in weights.items() if v < 0]
    if negative:
        raise ConfigError(f"synthesize weights must be >= 0; got {', '.join(negative)}")


def _probe(model: nn.Module, role: str, input_shape: tuple[int, ...], num_classes: int, device: torch.device):
    """One eval-mode forward on zeros, so a wrong shape fails here with a clear message (no buffer changes)."""
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *input_shape, device=device))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"the {role} cannot take inputs of shape {input_shape} ({first}); give input_shape as one "
                         "sample's shape without the batch axis, as the model was trained on") from None
    if out.dim() != 2 or out.shape[1] != num_classes:
        raise ModelError(f"the {role} outputs shape {tuple(out.shape)} but num_classes is {num_classes}; "
                         "set num_classes to the teacher's number of classes")


def _invert(teacher: nn.Module, student: nn.Module | None, bn_loss: BNStatisticsLoss, x: Tensor, y: Tensor,
            steps: int, lr: float, weights: dict[str, float], batch: int) -> list[dict[str, float]]:
    """`steps` Adam steps on the inputs `x` (in place) towards class `y` under the module docstring's loss (with the
    student, when given, to compete with); the loss terms at the first and last step."""
    zero = torch.zeros((), device=x.device)  # the value of a switched-off term
    optimizer = torch.optim.Adam([x], lr=lr)
    history = []
    for step in range(steps):
        # cosine decay: large moves early to leave the noise, small ones late to settle
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        bn_loss.reset()
        logits = teacher(x)
        parts = {"ce": F.cross_entropy(logits, y),
                 "bn": bn_loss.value if bn_loss.layers else zero,
                 "tv": total_variation(x, image=x.dim() == 4),
                 "l2": x.pow(2).mean(),
                 "js": js_divergence(logits, student(x)) if student is not None else zero}
        total = (parts["ce"] + weights["bn_weight"] * parts["bn"] + weights["tv_weight"] * parts["tv"]
                 + weights["l2_weight"] * parts["l2"] - weights["competition_weight"] * parts["js"])
        if step in (0, steps - 1):
            history.append({"batch": batch, "step": step, "total": float(total.detach()),
                            **{k: float(v.detach()) for k, v in parts.items()}})
        # gradients for x only: the teacher's (and student's) .grad stay untouched
        (grad,) = torch.autograd.grad(total, [x])
        optimizer.zero_grad(set_to_none=True)
        x.grad = grad
        optimizer.step()
    return history


def synthesize(
    teacher: nn.Module,
    num_samples: int,
    input_shape: Sequence[int],
    num_classes: int,
    steps: int = 200,
    lr: float = 0.1,
    batch_size: int = 128,
    bn_weight: float = 1.0,
    tv_weight: float = 1e-3,
    l2_weight: float = 1e-4,
    seed: int = 0,
    device: str | torch.device | None = None,
    student: nn.Module | None = None,
    competition_weight: float = 0.0,
) -> SyntheticData:
    """`num_samples` inputs of `input_shape` made from noise by DeepInversion; target classes are balanced
    (sample i gets class i mod num_classes, so every batch mixes classes, as the real batches behind the running
    statistics did). The teacher is frozen in place (eval mode, requires_grad=False) and moved to `device` (default:
    where its parameters are); only the inputs are optimised, so no parameter or buffer of the teacher (or of the
    student) changes. Deterministic for a given `seed` on CPU; returned on the CPU. Loss: see the module docstring.
    """
    input_shape = (int(input_shape),) if isinstance(input_shape, int) else tuple(int(d) for d in input_shape)
    weights = {"bn_weight": bn_weight, "tv_weight": tv_weight, "l2_weight": l2_weight,
               "competition_weight": competition_weight}
    _check_arguments(num_samples, input_shape, num_classes, steps, lr, batch_size, weights)
    if competition_weight > 0 and student is None:
        raise ConfigError("competition_weight > 0 needs a student to compete with; pass student=... or set it to 0")
    device = torch.device(device) if device is not None else next(teacher.parameters(), torch.empty(0)).device
    teacher.eval().requires_grad_(False)
    teacher.to(device)
    _probe(teacher, "teacher", input_shape, num_classes, device)
    compete = student is not None and competition_weight > 0
    if compete:
        student_was_training = student.training
        student.eval().to(device)  # eval: its BatchNorm statistics must not absorb synthetic batches
        _probe(student, "student", input_shape, num_classes, device)
    generator = torch.Generator().manual_seed(seed)  # the noise comes from here only, so seed fixes the output
    targets = torch.arange(num_samples) % num_classes
    inputs, history = [], []
    with BNStatisticsLoss(teacher) as bn_loss:
        if bn_weight > 0 and not bn_loss.layers:
            raise ModelError(f"{type(teacher).__name__} has no BatchNorm layer with running statistics, so the "
                             "BN-statistics prior has nothing to match; use a BatchNorm teacher or set bn_weight=0")
        for batch, start in enumerate(range(0, num_samples, batch_size)):
            y = targets[start:start + batch_size].to(device)
            x = torch.randn(len(y), *input_shape, generator=generator).to(device).requires_grad_(True)
            history += _invert(teacher, student if compete else None, bn_loss, x, y, steps, lr, weights, batch)
            inputs.append(x.detach().cpu())
    if compete:
        student.train(student_was_training)
    return SyntheticData(torch.cat(inputs), targets, history)
