"""Boundary supporting samples: adversarial inputs just on the teacher's side of its decision boundary, added to the
distillation data so the student learns where the teacher's classes meet (Heo, Lee, Yun & Choi, AAAI 2019,
"Knowledge Distillation with Adversarial Samples Supporting Decision Boundary").

A base sample x_0 that the teacher classifies correctly as class b (its top class) is pushed towards a target
class t (the teacher's second most likely class, or a random other class) by descending the logit margin

    L(x) = z_b(x) - z_t(x)

with the paper's adaptive step, a DeepFool-like move to where the linearised margin would reach zero:

    x_{k+1} = clip( x_k - eta_k * grad_x L(x_k) ),    eta_k = step_size * L(x_k) / ||grad_x L(x_k)||^2

Each sample stops once L(x_k) < margin_eps (a small positive margin keeps it on the base side of the boundary,
so the teacher's top class stays b) or after `steps` steps; `clip` keeps it within the inputs' value range.
The samples are returned unlabelled (label -1): in distillation the teacher labels them live, like a transfer set,
and its soft outputs there carry the boundary's position, which is what the student should learn.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from kdkit.errors import ConfigError, DataError, ModelError
from kdkit.labels import UNLABELLED

TARGETS = ("second", "random")
TOKEN_IDS = "boundary samples perturb continuous inputs (images, signals), not token ids"


@dataclass
class BoundaryStats:
    """What the attack did. Margins are the teacher's z_b - z_t, averaged over the samples (before: at the (clamped)
    base inputs; after: at the returned ones). `reached`: share with a final margin below margin_eps; `crossed`: share
    that overshot the boundary (margin < 0); `kept_base`: share whose teacher top class is still b."""

    num_samples: int
    pool_size: int
    margin_before: float
    margin_after: float
    abs_margin_before: float
    abs_margin_after: float
    reached: float
    crossed: float
    kept_base: float
    mean_steps: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def summary(self) -> str:
        """One line for the log."""
        return (f"boundary samples: {self.num_samples} generated from {self.pool_size} correctly classified inputs; "
                f"teacher margin z_b - z_t {self.margin_before:.3g} -> {self.margin_after:.3g} (mean), "
                f"{self.reached:.0%} reached the boundary, {self.crossed:.0%} crossed it")


class BoundarySamples(TensorDataset):
    """(x, -1) rows made by :func:`boundary_samples`. Per sample: `source` (index of its base input), `base` and
    `target` classes, `margin_before` / `margin_after` (the teacher's z_b - z_t), `steps` taken; `stats` sums up."""

    def __init__(self, inputs: Tensor, source: Tensor, base: Tensor, target: Tensor, margin_before: Tensor,
                 margin_after: Tensor, steps: Tensor, stats: BoundaryStats) -> None:
        super().__init__(inputs, torch.full((len(inputs),), UNLABELLED, dtype=torch.long))
        self.source, self.base, self.target = source, base, target
        self.margin_before, self.margin_after, self.steps = margin_before, margin_after, steps
        self.stats = stats


def check_continuous(x: Tensor) -> None:
    """Token ids (integer tensors) have no gradient to follow: one line instead of an autograd error."""
    if not x.is_floating_point():
        raise ConfigError(TOKEN_IDS)


def _check_arguments(num_samples: int, steps: int, step_size: float, target: str, margin_eps: float,
                     bounds: tuple[float, float] | None, batch_size: int) -> None:
    if num_samples < 1 or steps < 1 or batch_size < 1:
        raise ConfigError(f"boundary_samples needs num_samples, steps and batch_size >= 1, got {num_samples}, "
                          f"{steps}, {batch_size}")
    if not (step_size > 0 and math.isfinite(step_size)):
        raise ConfigError(f"boundary_samples step_size must be > 0, got {step_size}")
    if not (margin_eps >= 0 and math.isfinite(margin_eps)):
        raise ConfigError(f"boundary_samples margin_eps must be >= 0, got {margin_eps}")
    if target not in TARGETS:
        raise ConfigError(f"boundary_samples target must be 'second' or 'random', got {target!r}")
    if bounds is not None and not (len(bounds) == 2 and float(bounds[0]) < float(bounds[1])):
        raise ConfigError(f"boundary_samples bounds must be (low, high) with low < high, got {bounds}")


def _as_dataset(inputs: Tensor | Dataset, labels: Tensor | None) -> Dataset:
    """A tensor of inputs (+ labels) as a dataset of (x, y) rows; rows without a label get -1 (no check)."""
    if not isinstance(inputs, Tensor):
        if labels is not None:
            raise ConfigError("give labels only with a tensor of inputs; a dataset carries its own labels")
        return inputs
    if labels is None:
        labels = torch.full((len(inputs),), UNLABELLED, dtype=torch.long)
    elif len(labels) != len(inputs):
        raise DataError(f"boundary_samples got {len(inputs)} inputs but {len(labels)} labels; give one per input")
    return TensorDataset(inputs, torch.as_tensor(labels).long())


def _margin(logits: Tensor, base: Tensor, target: Tensor) -> Tensor:
    """z_b - z_t per row."""
    return (logits.gather(1, base[:, None]) - logits.gather(1, target[:, None]))[:, 0]


def _logits(teacher: nn.Module, x: Tensor) -> Tensor:
    out = teacher(x)
    if not isinstance(out, Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ModelError(f"boundary samples need a teacher with one row of class logits per sample; it returned "
                         f"{shape}")
    return out


@torch.no_grad()
def _scan(teacher: nn.Module, data: Dataset, batch_size: int, device: torch.device):
    """One pass over `data`: the teacher's top two classes per row, whether the row may serve as a base (correct,
    or unlabelled), the inputs' min and max (the default bounds) and the number of classes."""
    top2, usable, low, high = [], [], math.inf, -math.inf
    for start in range(0, len(data), batch_size):  # type: ignore[arg-type]
        rows = [data[i] for i in range(start, min(start + batch_size, len(data)))]  # type: ignore[arg-type]
        x = torch.stack([r[0] for r in rows])
        y = torch.as_tensor([int(r[1]) if len(r) > 1 else UNLABELLED for r in rows])
        check_continuous(x)
        logits = _logits(teacher, x.to(device)).float().cpu()
        if logits.shape[1] < 2:
            raise ModelError("boundary samples need a teacher with at least two classes: a boundary lies between two")
        best = logits.topk(2, dim=1).indices
        top2.append(best)
        usable.append((y == UNLABELLED) | (best[:, 0] == y))
        low, high = min(low, float(x.min())), max(high, float(x.max()))
    return torch.cat(top2), torch.cat(usable), low, high, logits.shape[1]


def _choose(pool: Tensor, num_samples: int, target: str, generator: torch.Generator) -> Tensor:
    """`num_samples` base indices from `pool`, without replacement while the pool lasts. With target 'random' a
    larger request reuses bases in fresh random orders (each repeat gets its own random target class); with
    'second' a repeat would give an identical sample (the attack is deterministic), so it is refused instead."""
    if num_samples <= len(pool):
        return pool[torch.randperm(len(pool), generator=generator)[:num_samples]]
    if target == "second":
        raise DataError(f"boundary samples: num_samples {num_samples} exceeds the {len(pool)} inputs the teacher "
                        "classifies correctly, and target 'second' would repeat them exactly; lower num_samples "
                        "or use target 'random'")
    rounds = math.ceil(num_samples / len(pool))
    order = torch.cat([torch.randperm(len(pool), generator=generator) for _ in range(rounds)])
    return pool[order[:num_samples]]


def boundary_samples(
    teacher: nn.Module,
    inputs: Tensor | Dataset,
    num_samples: int,
    steps: int = 10,
    step_size: float = 0.5,
    target: Literal["second", "random"] = "second",
    margin_eps: float = 0.1,
    bounds: tuple[float, float] | None = None,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    labels: Tensor | None = None,
) -> BoundarySamples:
    """`num_samples` boundary supporting samples of the teacher (update rule: see the module docstring).

    `inputs`: a float tensor of inputs (images, 1-D signals; `labels` optional) or a dataset of (x, y) rows (y = -1:
    unlabelled). Bases are drawn, seeded by `seed`, without replacement among the rows the teacher classifies
    correctly (rows without a label all qualify). A request larger than that pool is refused with target 'second'
    (the attack is deterministic: a repeated base would give the very same sample); with 'random' the bases are
    reused evenly, each repeat with its own random target. With 'random' a third class may overtake b on the way
    (see `stats.kept_base`); 'second' moves straight towards the nearest rival. `bounds` (default: the min and max
    over all values of `inputs`) clamp the bases and every step. `step_size` scales the paper's adaptive step: 1
    jumps to where the linearised margin is zero, which a curved teacher often overshoots; a fraction approaches
    the boundary in smaller moves and stays on the base side.

    The teacher runs in eval mode with gradients only for the inputs; its modes and requires_grad flags are given
    back and no parameter, buffer or .grad changes (with `device` it is moved there for the attack and back).
    Deterministic for a given `seed` on the CPU; returned on the CPU, in the dtype of `inputs`.
    """
    _check_arguments(num_samples, steps, step_size, target, margin_eps, bounds, batch_size)
    if isinstance(inputs, Tensor):
        check_continuous(inputs)
    data = _as_dataset(inputs, labels)
    if len(data) == 0:  # type: ignore[arg-type]
        raise DataError("boundary_samples got no inputs; give at least one base sample")
    with _attacking(teacher, device) as device:
        top2, usable, low, high, num_classes = _scan(teacher, data, batch_size, device)
        pool = usable.nonzero()[:, 0]
        if len(pool) == 0:
            raise DataError("boundary samples need base inputs the teacher classifies correctly, and it classifies "
                            "none of them correctly; train the teacher first")
        lo, hi = (float(bounds[0]), float(bounds[1])) if bounds is not None else (low, high)
        generator = torch.Generator().manual_seed(seed)  # the only randomness: bases and random targets
        source = _choose(pool, num_samples, target, generator)
        base = top2[source, 0]
        # 'random': uniform over the other classes, b shifted by 1 .. C-1 places
        goal = top2[source, 1] if target == "second" else (
            base + torch.randint(1, num_classes, (num_samples,), generator=generator)) % num_classes
        parts = [_attack(teacher, torch.stack([data[int(i)][0] for i in source[s:s + batch_size]]),
                         base[s:s + batch_size], goal[s:s + batch_size], steps, step_size, margin_eps, lo, hi,
                         device) for s in range(0, num_samples, batch_size)]
    x, before, after, kept, taken = (torch.cat(column) for column in zip(*parts, strict=True))
    stats = BoundaryStats(
        num_samples=num_samples, pool_size=len(pool), margin_before=float(before.mean()),
        margin_after=float(after.mean()), abs_margin_before=float(before.abs().mean()),
        abs_margin_after=float(after.abs().mean()), reached=float((after < margin_eps).float().mean()),
        crossed=float((after < 0).float().mean()), kept_base=float(kept.float().mean()),
        mean_steps=float(taken.float().mean()))
    return BoundarySamples(x, source, base, goal, before, after, taken, stats)


@contextmanager
def _attacking(teacher: nn.Module, device: str | torch.device | None) -> Iterator[torch.device]:
    """The teacher in eval mode without parameter gradients, on `device` (default: where it is), for the attack;
    its modes, requires_grad flags and device are given back afterwards. Yields the device."""
    param = next(teacher.parameters(), None)
    home = param.device if param is not None else torch.device("cpu")
    device = torch.device(device) if device is not None else home
    modes = {module: module.training for module in teacher.modules()}
    grad_flags = [(p, p.requires_grad) for p in teacher.parameters()]
    # eval: BatchNorm uses its running statistics (no buffer changes, and every sample's logits depend on itself
    # alone, so the gradient of the summed margins is each sample's own); no parameter gradients are needed
    teacher.eval().requires_grad_(False)
    if device != home:
        teacher.to(device)
    try:
        yield device
    finally:
        for module, mode in modes.items():
            module.train(mode)
        for p, flag in grad_flags:
            p.requires_grad_(flag)
        if device != home:
            teacher.to(home)


def _attack(teacher: nn.Module, x0: Tensor, base: Tensor, goal: Tensor, steps: int, step_size: float,
            margin_eps: float, lo: float, hi: float, device: torch.device):
    """One batch of the iteration; returns (inputs, margin before, margin after, base still top, steps taken)."""
    dtype = x0.dtype
    x = x0.to(device).clamp(lo, hi)
    base, goal = base.to(device), goal.to(device)
    with torch.no_grad():
        before = _margin(_logits(teacher, x), base, goal)
    active = before >= margin_eps  # a base already within margin_eps of the boundary stays as it is
    taken = torch.zeros(len(x), dtype=torch.long, device=device)
    flat = [1] * (x.dim() - 1)
    for _ in range(steps):
        rows = active.nonzero()[:, 0]
        if len(rows) == 0:
            break
        xa = x[rows].detach().requires_grad_(True)
        margin = _margin(_logits(teacher, xa), base[rows], goal[rows])
        (grad,) = torch.autograd.grad(margin.sum(), [xa])  # inputs only: the teacher's .grad stay untouched
        margin = margin.detach()
        norm2 = grad.flatten(1).pow(2).sum(1)
        # reached: stop; no usable gradient (flat region, non-finite values): no direction to move in, stop too
        stop = (margin < margin_eps) | ~(norm2 > 0) | ~torch.isfinite(norm2) | ~torch.isfinite(margin)
        move = ~stop
        eta = torch.where(move, step_size * margin / norm2.clamp_min(1e-30), torch.zeros_like(margin))
        stepped = (xa.detach() - eta.view(-1, *flat) * grad).clamp(lo, hi)
        x[rows[move]] = stepped[move].to(x.dtype)
        taken[rows[move]] += 1
        active[rows[stop]] = False
    with torch.no_grad():
        logits = _logits(teacher, x)
        after = _margin(logits, base, goal)
        kept = logits.argmax(1) == base
    return x.detach().to("cpu", dtype), before.cpu(), after.cpu(), kept.cpu(), taken.cpu()


__all__ = ["TOKEN_IDS", "BoundarySamples", "BoundaryStats", "boundary_samples", "check_continuous"]
