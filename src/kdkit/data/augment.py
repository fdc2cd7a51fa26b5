"""Batch augmentation inside the training step, so the teacher and the student see the same view of every sample.

Beyer et al. 2022 ("Knowledge distillation: A good teacher is patient and consistent") show that distillation works
best as *function matching*: the teacher and the student receive the identical augmented input, with aggressive
augmentation (MixUp, crops). :func:`kdkit.fit` therefore augments the batch once, after it is loaded and before the
scheme runs any model on it; every scheme then gives that one view to all of its models.

Each op is a callable ``(x, y, generator) -> (x, y)`` on a batch on any device, for images (N, C, H, W), 1-D signals
(N, L) or (N, C, L) (and volumes (N, C, D, H, W)): the spatial dims are all dims after the channel, or L alone for
(N, L). All randomness comes from the CPU ``torch.Generator`` passed in (drawn on the CPU, then moved to the batch's
device), so the same seed gives the same views on any device, and a student trained alone and a distilled student
with the same seed and data order see identical inputs.

Mixing ops (MixUp, CutMix) return the labels as a :class:`kdkit.labels.MixedTarget`: row i is ``lam`` parts of sample i
(label ``a[i]``) and ``1 - lam`` parts of sample ``perm[i]`` (label ``b[i]``); see
:func:`kdkit.losses.kd.hard_label_ce`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from kdkit.errors import ConfigError
from kdkit.labels import MixedTarget

Target = Tensor | MixedTarget | None

NOT_TOKENS = "augmentation applies to float inputs (images, signals), not token ids; remove train.augment"


def _spatial_dims(x: Tensor) -> int:
    """How many trailing dims are spatial: L of (N, L), everything after the channel of (N, C, *spatial)."""
    return 1 if x.dim() == 2 else x.dim() - 2


def _check(x: Tensor, y: Target, op: str) -> None:
    if not x.is_floating_point():
        raise ConfigError(f"{NOT_TOKENS} (got {x.dtype} inputs)")
    if not 2 <= x.dim() <= 5:
        raise ConfigError(f"augmentation '{op}' takes batches (N, L), (N, C, L), (N, C, H, W) or (N, C, D, H, W); "
                          f"got inputs of shape {tuple(x.shape)}")
    labels = [y] if isinstance(y, Tensor) else [y.a, y.b] if isinstance(y, MixedTarget) else []
    if any(t.dim() > 1 for t in labels):
        # a tag per position would not follow the shifted, flipped or mixed positions of the input
        raise ConfigError("augmentation needs one label per sample; per-token labels (N, L) would not follow the "
                          "cropped, flipped or mixed inputs; remove train.augment")


def _beta(alpha: float, generator: torch.Generator) -> float:
    """lam ~ Beta(alpha, alpha), drawn from `generator` (torch's Beta sampler cannot take a generator)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def _positive_alpha(alpha: float, op: str) -> float:
    if not (isinstance(alpha, (int, float)) and alpha > 0 and math.isfinite(alpha)):
        raise ConfigError(f"augmentation '{op}': alpha must be a number > 0 (Beta(alpha, alpha)), got {alpha!r}")
    return float(alpha)


def _mixed(y: Target, perm: Tensor, lam: float, op: str) -> Target:
    if isinstance(y, MixedTarget):
        raise ConfigError(f"augmentation '{op}' got a batch that is already mixed; give at most one of mixup, cutmix")
    return None if y is None else MixedTarget(y, y[perm.to(y.device)], lam)


class RandomCrop:
    """Pad each spatial dim by `padding` on both sides (mirrored borders or zeros) and cut the original size back
    out at a random offset per sample: a random shift by up to `padding` positions."""

    def __init__(self, padding: int = 4, mode: Literal["reflect", "zeros"] = "reflect") -> None:
        if not (isinstance(padding, int) and not isinstance(padding, bool) and padding >= 0):
            raise ConfigError(f"augmentation 'crop': padding must be a whole number >= 0, got {padding!r}")
        if mode not in ("reflect", "zeros"):
            raise ConfigError(f"augmentation 'crop': mode must be reflect or zeros, got {mode!r}")
        self.padding, self.mode = padding, mode

    def draw(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Offsets (N, spatial dims) into the padded input, each in [0, 2 * padding]."""
        return torch.randint(0, 2 * self.padding + 1, (len(x), _spatial_dims(x)), generator=generator)

    def __call__(self, x: Tensor, y: Target, generator: torch.Generator) -> tuple[Tensor, Target]:
        _check(x, y, "crop")
        if self.padding == 0:
            return x, y
        return self.apply(x, self.draw(x, generator)), y

    def pad(self, x: Tensor) -> Tensor:
        """The input padded by `padding` on both sides of every spatial dim."""
        k = _spatial_dims(x)
        flat = x.unsqueeze(1) if x.dim() == 2 else x  # F.pad's reflect mode wants a channel dim
        if self.mode == "reflect" and min(flat.shape[2:]) <= self.padding:
            raise ConfigError(f"augmentation 'crop': reflect padding {self.padding} needs inputs longer than that "
                              f"in every spatial dim, got shape {tuple(x.shape)}; lower padding or use mode: zeros")
        padded = F.pad(flat, [self.padding] * (2 * k), mode="reflect" if self.mode == "reflect" else "constant")
        return padded.squeeze(1) if x.dim() == 2 else padded

    def apply(self, x: Tensor, offsets: Tensor) -> Tensor:
        padded, k = self.pad(x), _spatial_dims(x)
        offsets = offsets.to(x.device)
        out = padded
        for j in range(k):  # one gather per spatial dim: an exact copy of each sample's own window
            dim = x.dim() - k + j
            size = x.shape[dim]
            index = offsets[:, j, None] + torch.arange(size, device=x.device)  # (N, size)
            shape = [len(x)] + [1] * (x.dim() - 1)
            shape[dim] = size
            target = list(out.shape)
            target[dim] = size
            out = torch.gather(out, dim, index.view(shape).expand(target))
        return out


class HorizontalFlip:
    """Reverse the last dim (image width, signal time) of each sample with probability `p`."""

    def __init__(self, p: float = 0.5) -> None:
        if not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
            raise ConfigError(f"augmentation 'flip': p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)

    def draw(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Which samples are flipped, (N,) booleans; rand is in [0, 1), so p = 1 flips all and p = 0 none."""
        return torch.rand(len(x), generator=generator) < self.p

    def __call__(self, x: Tensor, y: Target, generator: torch.Generator) -> tuple[Tensor, Target]:
        _check(x, y, "flip")
        flip = self.draw(x, generator).to(x.device).view(-1, *[1] * (x.dim() - 1))
        return torch.where(flip, x.flip(-1), x), y


class MixUp:
    """MixUp (Zhang, Cisse, Dauphin & Lopez-Paz 2018, "mixup: Beyond Empirical Risk Minimization"):

        lam ~ Beta(alpha, alpha) per batch,   x = lam * x + (1 - lam) * x[perm],   y = MixedTarget(y, y[perm], lam)
    """

    def __init__(self, alpha: float = 0.2) -> None:
        self.alpha = _positive_alpha(alpha, "mixup")

    def draw(self, x: Tensor, generator: torch.Generator) -> tuple[float, Tensor]:
        """(lam, perm): the mixing weight and the partner of every sample."""
        lam = _beta(self.alpha, generator)
        return lam, torch.randperm(len(x), generator=generator)

    def __call__(self, x: Tensor, y: Target, generator: torch.Generator) -> tuple[Tensor, Target]:
        _check(x, y, "mixup")
        lam, perm = self.draw(x, generator)
        perm = perm.to(x.device)
        return lam * x + (1.0 - lam) * x[perm], _mixed(y, perm, lam, "mixup")


class CutMix:
    """CutMix (Yun, Han, Oh, Chun, Choe & Yoo 2019, "CutMix: Regularization Strategy to Train Strong Classifiers
    with Localizable Features"): a box covering a share 1 - lam of the spatial area (a segment of a 1-D signal),
    the same for the whole batch, is pasted from x[perm] into x. lam ~ Beta(alpha, alpha) sets the box's size; the
    box is clipped at the borders, so lam is then recomputed from the pasted area:

        lam = 1 - box area / total area,   y = MixedTarget(y, y[perm], lam)
    """

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = _positive_alpha(alpha, "cutmix")

    def draw(self, x: Tensor, generator: torch.Generator) -> tuple[list[tuple[int, int]], Tensor, float]:
        """(box, perm, lam): per spatial dim the [start, stop) of the box; the partners; the exact kept share."""
        sizes = x.shape[x.dim() - _spatial_dims(x):]
        side = (1.0 - _beta(self.alpha, generator)) ** (1.0 / len(sizes))  # each side's share of the dim
        box = []
        for size in sizes:
            cut, centre = int(size * side), int(torch.randint(0, size, (1,), generator=generator))
            start = centre - cut // 2
            box.append((max(start, 0), min(start + cut, size)))
        pasted = math.prod(hi - lo for lo, hi in box)
        return box, torch.randperm(len(x), generator=generator), 1.0 - pasted / math.prod(sizes)

    def __call__(self, x: Tensor, y: Target, generator: torch.Generator) -> tuple[Tensor, Target]:
        _check(x, y, "cutmix")
        box, perm, lam = self.draw(x, generator)
        perm = perm.to(x.device)
        region = (..., *(slice(lo, hi) for lo, hi in box))
        out = x.clone()
        out[region] = x[perm][region]
        return out, _mixed(y, perm, lam, "cutmix")


Op = RandomCrop | HorizontalFlip | MixUp | CutMix


class Compose:
    """Apply ops in order, one generator for all."""

    def __init__(self, ops: Sequence[Op]) -> None:
        self.ops = list(ops)
        mixing = [op for op in self.ops if isinstance(op, (MixUp, CutMix))]
        if len(mixing) > 1:  # labels of a twice-mixed batch would have four parts
            raise ConfigError("give at most one of mixup, cutmix in augment (a batch is mixed once)")

    def __call__(self, x: Tensor, y: Target, generator: torch.Generator) -> tuple[Tensor, Target]:
        for op in self.ops:
            x, y = op(x, y, generator)
        return x, y


AUGMENTS: dict[str, type] = {
    "crop": RandomCrop,
    "flip": HorizontalFlip,
    "mixup": MixUp,
    "cutmix": CutMix,
}


def build_augment(specs: Sequence[Mapping[str, Any]] | None) -> Compose | None:
    """Ops from config dicts such as ``[{name: crop, padding: 4}, {name: flip}, {name: mixup, alpha: 0.2}]``;
    None for an empty list. Unknown names or arguments give a one-line ConfigError."""
    if not specs:
        return None
    ops = []
    for spec in specs:
        if not isinstance(spec, Mapping) or "name" not in spec:
            raise ConfigError(f"an augmentation is a mapping with a name, e.g. {{name: crop, padding: 4}}; "
                              f"got {spec!r}")
        options = {k: v for k, v in spec.items() if k != "name"}
        name = spec["name"]
        if not isinstance(name, str) or name not in AUGMENTS:
            raise ConfigError(f"unknown augmentation {name!r}; choose one of: {', '.join(sorted(AUGMENTS))}")
        accepted = set(inspect.signature(AUGMENTS[name].__init__).parameters) - {"self"}
        unknown = sorted(set(options) - accepted)
        if unknown:
            raise ConfigError(f"augmentation '{name}' got unknown argument(s) {unknown}; "
                              f"it accepts: {sorted(accepted)}")
        ops.append(AUGMENTS[name](**options))
    return Compose(ops)


AUGMENT_SEED_OFFSET = 0x5EED  # keeps the augmentation stream apart from the global one that seed_everything seeds


def augment_generator(seed: int, rank: int = 0) -> torch.Generator:
    """The CPU generator of one fit's augmentations. Each DDP process gets its own stream (rank), so samples in
    different shards do not share offsets and partners; rank 0 draws what a single process would."""
    return torch.Generator().manual_seed((seed + AUGMENT_SEED_OFFSET + 7919 * rank) % 2**63)


__all__ = ["AUGMENTS", "Compose", "CutMix", "HorizontalFlip", "MixUp", "MixedTarget", "RandomCrop",
           "augment_generator", "build_augment"]
