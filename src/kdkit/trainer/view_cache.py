"""Augmentation and a cached teacher together: the teacher's outputs on a fixed number of augmented views of every
sample, computed once, kept on disk, and replayed to the student (Shen & Xing 2022, "A Fast Knowledge Distillation
Framework for Visual Recognition", FKD). ``distill.cached_views: V`` turns it on.

A view of sample i is the chain of the run's random augmentations, each with its draws recorded:

    the image folder's own   flip (p 0.5), then random_crop (reflect padding, offset per spatial dim)
    train.augment's ops      crop (offsets), flip (a bit), mixup (partner j, lam), cutmix (partner j, box, lam)

drawn once per (sample, view) from a fixed seed, so every run seed, student and tune trial of the same data and
teacher shares one store. A mixing op mixes sample i's view with view v of its partner j, rendered up to that op.
Rendering reuses kdkit.data.augment's ops on the un-augmented inputs, so a replayed view is the live augmentation with
the same draws, bit for bit. Each epoch, every sample takes one of its V views, drawn from the distillation's
seed and the epoch; the student sees that view and the loss terms get the teacher's stored answer to it.

The teacher's answer is kept as log-probabilities in float16 (all C classes, or the top `top_k` with the rest of the
mass spread evenly over the other classes): log p is a logit vector with the teacher's softmax at every temperature, and
in its logarithm a probability too small for a float16 probability (below 6e-8, still 0.01 at T = 4) survives. Loss
terms therefore receive log-probabilities where a live teacher gives logits; terms that read only softmaxes of them (kd,
dkd, dist, ...) are unchanged by the shift. The file sits beside the teacher cache (distill.cache_dir) with its
discipline (kdkit.trainer.teacher_cache): keyed by the teacher's weights, the un-augmented inputs and every setting of
the views, written atomically, a checksum in its header, rebuilt when damaged; it also records every draw.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, Dataset, TensorDataset

from kdkit.data.augment import CutMix, HorizontalFlip, MixUp, RandomCrop, build_augment
from kdkit.errors import ConfigError
from kdkit.labels import UNLABELLED, MixedTarget

VIEW_FORMAT = "kdkit-teacher-views/1"
DRAW_SEED = 0x5EE7  # fixed: the same views for every run seed, so one store serves them all


def _spatial(sample_shape: Sequence[int]) -> int:
    """Spatial dims of one sample: L of (L,), everything after the channel of (C, *spatial)."""
    return 1 if len(sample_shape) == 1 else len(sample_shape) - 1


def dataset_ops(dataset: Dataset) -> tuple[Dataset, list[Any]]:
    """(the dataset without its own random augmentation, that augmentation as ops). An image folder's training set
    flips (p 0.5) and then shifts (random_crop, mirrored borders) each image as it is read."""
    from kdkit.data.image_folder import ImageTensors

    if isinstance(dataset, ImageTensors):
        ops: list[Any] = [HorizontalFlip(0.5)] if dataset.flip else []
        ops += [RandomCrop(dataset.crop, "reflect")] if dataset.crop else []
        return dataset.without_augmentation(), ops
    if isinstance(dataset, ConcatDataset):
        parts = [dataset_ops(d) for d in dataset.datasets]
        specs = {repr([_spec(op) for op in ops]) for _, ops in parts}
        if len(specs) > 1:
            raise ConfigError("distill.cached_views: the parts of the distillation data augment differently")
        return ConcatDataset([base for base, _ in parts]), parts[0][1]
    return dataset, []


def _spec(op: Any) -> dict[str, Any]:
    """An op as the plain values that decide its views (part of the store's key)."""
    return {"op": type(op).__name__, **{k: v for k, v in vars(op).items() if isinstance(v, (int, float, str))}}


def batch_rows(dataset: Dataset, index: Tensor) -> tuple[Tensor, Tensor]:
    """Inputs and labels (UNLABELLED where there are none) of the samples at `index`, as one batch."""
    from kdkit.data.image_folder import ImageTensors

    if isinstance(dataset, TensorDataset):
        rows = dataset[index]
        return rows[0], rows[1] if len(rows) > 1 else torch.full((len(index),), UNLABELLED)
    if isinstance(dataset, ImageTensors):
        return dataset.rows(index)
    if isinstance(dataset, ConcatDataset):
        ends = torch.tensor(dataset.cumulative_sizes)
        part = torch.bucketize(index, ends, right=True)
        xs, ys, order = [], [], []
        for p in part.unique().tolist():
            where = (part == p).nonzero().squeeze(1)
            start = 0 if p == 0 else dataset.cumulative_sizes[p - 1]
            x, y = batch_rows(dataset.datasets[p], index[where] - start)
            xs.append(x), ys.append(y), order.append(where)
        inverse = torch.empty_like(index)
        inverse[torch.cat(order)] = torch.arange(len(index))
        return torch.cat(xs)[inverse], torch.cat(ys)[inverse]
    items = [dataset[int(i)] for i in index]
    x = torch.stack([it[0] if isinstance(it, (tuple, list)) else it for it in items])
    y = [it[1] if isinstance(it, (tuple, list)) and len(it) > 1 else UNLABELLED for it in items]
    return x, torch.as_tensor(y, dtype=torch.long)


def draw_views(ops: Sequence[Any], samples: int, views: int, sample_shape: Sequence[int],
               seed: int = DRAW_SEED) -> list[dict[str, Tensor]]:
    """Every op's draws for every (sample, view): tensors with leading dims (samples, views)."""
    g = torch.Generator().manual_seed(seed)
    nv, k = (samples, views), _spatial(sample_shape)
    draws: list[dict[str, Tensor]] = []
    for op in ops:
        if isinstance(op, HorizontalFlip):
            draws.append({"flip": torch.rand(nv, generator=g) < op.p})
        elif isinstance(op, RandomCrop):
            draws.append({"offsets": torch.randint(0, 2 * op.padding + 1, (*nv, k), generator=g)})
        elif isinstance(op, MixUp):
            lam = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=g))).beta(op.alpha, op.alpha, nv)
            draws.append({"partner": torch.randint(0, samples, nv, generator=g), "lam": torch.from_numpy(lam)})
        elif isinstance(op, CutMix):
            draws.append(_cutmix_draws(op, nv, sample_shape[len(sample_shape) - k:], samples, g))
    return draws


def _cutmix_draws(op: CutMix, nv: tuple[int, int], sizes: Sequence[int], samples: int,
                  g: torch.Generator) -> dict[str, Tensor]:
    """CutMix's box per (sample, view), drawn as kdkit.data.augment.CutMix draws one per batch."""
    beta = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=g))).beta(op.alpha, op.alpha, nv)
    side = torch.from_numpy((1.0 - beta) ** (1.0 / len(sizes)))
    lows, highs = [], []
    for size in sizes:
        cut = (size * side).floor().long()
        start = torch.randint(0, size, nv, generator=g) - cut // 2
        lows.append(start.clamp_min(0)), highs.append((start + cut).clamp_max(size))
    box = torch.stack([torch.stack(lows, -1), torch.stack(highs, -1)], -1)  # (samples, views, dims, 2)
    pasted = (box[..., 1] - box[..., 0]).prod(-1).double()
    return {"partner": torch.randint(0, samples, nv, generator=g), "box": box,
            "lam": 1.0 - pasted / math.prod(sizes)}


def _rows_shape(x: Tensor, values: Tensor) -> Tensor:
    return values.view(-1, *[1] * (x.dim() - 1))


def _box_mask(x: Tensor, box: Tensor) -> Tensor:
    """(N, 1.., *spatial) booleans: inside each row's box."""
    k = box.shape[1]
    mask = torch.ones(len(x), *[1] * (x.dim() - 1), dtype=torch.bool)
    for j in range(k):
        dim = x.dim() - k + j
        pos = torch.arange(x.shape[dim]).view(*[1] * dim, -1, *[1] * (x.dim() - dim - 1))
        lo, hi = (box[:, j, e].view(-1, *[1] * (x.dim() - 1)) for e in (0, 1))
        mask = mask & (pos >= lo) & (pos < hi)
    return mask


class ViewRenderer:
    """Renders views (sample index, view number) from the un-augmented dataset and the recorded draws."""

    def __init__(self, base: Dataset, ops: Sequence[Any], draws: list[dict[str, Tensor]]) -> None:
        self.base, self.ops, self.draws = base, list(ops), draws

    def render(self, index: Tensor, view: Tensor, upto: int | None = None) -> tuple[Tensor, Tensor | MixedTarget]:
        x, y = batch_rows(self.base, index)
        target: Tensor | MixedTarget = y
        for k, op in enumerate(self.ops[:upto]):
            d = {name: t[index, view] for name, t in self.draws[k].items()}
            if isinstance(op, HorizontalFlip):
                x = torch.where(_rows_shape(x, d["flip"]), x.flip(-1), x)
            elif isinstance(op, RandomCrop):
                x = op.apply(x, d["offsets"])
            else:  # the partner's view of the same number, rendered up to this op
                other, other_y = self.render(d["partner"], view, upto=k)
                if isinstance(op, MixUp):  # as MixUp computes it: lam and 1 - lam in double, then the input's dtype
                    x = _rows_shape(x, d["lam"].to(x.dtype)) * x + _rows_shape(x, (1.0 - d["lam"]).to(x.dtype)) * other
                else:
                    x = torch.where(_box_mask(x, d["box"]), other, x)
                target = MixedTarget(y, other_y, d["lam"].float())  # type: ignore[arg-type] (mixed once at most)
        return x, target


class ReplayedViews(Dataset):
    """The distillation data as replayed views: batches {"x", "y", "index"} whose inputs are each sample's view of
    this epoch (see :meth:`set_epoch`), and :meth:`teacher_logits` gives the teacher's stored answer to them once
    :meth:`fill` has computed or loaded it. `augment`: train.augment's specs, rendered here instead of in fit."""

    renders_views = True  # fit leaves augmentation to it and tells it the epoch
    takes_index_batches = True  # make_loader hands it whole index batches

    def __init__(self, dataset: Dataset, augment: Sequence[Mapping[str, Any]] | None, views: int,
                 top_k: int | None = None, seed: int = 0) -> None:
        base, ops = dataset_ops(dataset)
        ops += build_augment(augment).ops if augment else []
        if not ops:
            raise ConfigError("distill.cached_views keeps several augmented views of each sample, but nothing "
                              "augments this data; add train.augment (or data.augment / data.random_crop for an "
                              "image folder), or use distill.cache_teacher for fixed inputs")
        x0, _ = batch_rows(base, torch.tensor([0]))
        if not x0.is_floating_point():
            raise ConfigError("distill.cached_views augments float inputs (images, signals), not token ids")
        self.samples, self.views, self.top_k, self.seed = len(base), views, top_k, seed  # type: ignore[arg-type]
        self.renderer = ViewRenderer(base, ops, draw_views(ops, self.samples, views, x0.shape[1:]))
        self.spec = {"ops": [_spec(op) for op in ops], "views": views, "top_k": top_k, "draw_seed": DRAW_SEED}
        self.outputs: dict[str, Tensor] | None = None
        self.picked = torch.zeros(self.samples, dtype=torch.long)
        self.set_epoch(0)

    def __len__(self) -> int:
        return self.samples

    def set_epoch(self, epoch: int) -> None:
        """Each sample's view for `epoch`: uniform over the V views, from the seed and the epoch alone."""
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**63)
        self.picked = torch.randint(0, self.views, (self.samples,), generator=g)

    def __getitem__(self, i: int | list[int] | Tensor) -> dict[str, Any]:
        index = torch.as_tensor(i).reshape(-1)
        x, y = self.renderer.render(index, self.picked[index])
        if not isinstance(i, (list, Tensor)):  # one sample (a probe of the input's shape): its own label
            return {"x": x[0], "y": (y if isinstance(y, Tensor) else y.a)[0], "index": int(index[0])}
        return {"x": x, "y": y, "index": index}

    def teacher_logits(self, index: Tensor) -> Tensor:
        """The teacher's stored log-probabilities (float32) on the views of `index` picked for this epoch."""
        if self.outputs is None:
            raise RuntimeError("ReplayedViews.fill has not run: there are no teacher outputs yet")
        index = index.cpu()
        view = self.picked[index]
        if "log_probs" in self.outputs:
            return self.outputs["log_probs"][index, view].float()
        return expand_top_k(self.outputs["top_values"][index, view].float(),
                            self.outputs["top_classes"][index, view].long(), self.num_classes)

    @property
    def num_classes(self) -> int:
        return int(self.outputs["classes"][0]) if self.outputs is not None else 0

    def compute(self, teacher_log_probs: Callable[[Tensor], Tensor], batch_size: int = 256) -> dict[str, Tensor]:
        """The teacher's answers to every (sample, view), with the draws that made the views."""
        chunks: list[Tensor] = []
        pairs = torch.cartesian_prod(torch.arange(self.samples), torch.arange(self.views))
        for start in range(0, len(pairs), batch_size):
            index, view = pairs[start:start + batch_size].unbind(1)
            chunks.append(teacher_log_probs(self.renderer.render(index, view)[0]).float().cpu())
        log_probs = torch.cat(chunks).view(self.samples, self.views, -1)
        classes = log_probs.shape[-1]
        out = {f"draw.{k}.{name}": t for k, d in enumerate(self.renderer.draws) for name, t in d.items()}
        out["classes"] = torch.full((self.samples,), classes, dtype=torch.int32)
        if self.top_k is None or self.top_k >= classes:
            out["log_probs"] = log_probs.half()
        else:
            values, top = log_probs.topk(self.top_k, dim=-1)
            out["top_values"], out["top_classes"] = values.half(), top.to(torch.int32)
        return out

    def use(self, stored: Mapping[str, Tensor]) -> None:
        """Take stored outputs, after checking that their draws are the ones this data and these settings make."""
        for k, d in enumerate(self.renderer.draws):
            for name, t in d.items():
                if not torch.equal(stored.get(f"draw.{k}.{name}", torch.empty(0)), t):
                    raise ConfigError(f"the stored views' draws differ from the ones made now ({name}); delete "
                                      "the cache file to rebuild it")
        self.outputs = dict(stored)


def expand_top_k(values: Tensor, classes: Tensor, num_classes: int) -> Tensor:
    """Full log-probabilities from the top k: those k as stored, the remaining mass spread evenly over the others."""
    rest = (1.0 - values.exp().sum(-1, keepdim=True)).clamp_min(1e-12) / max(num_classes - values.shape[-1], 1)
    full = rest.log().expand(*values.shape[:-1], num_classes).clone()
    return full.scatter_(-1, classes, values)


class ViewTeacherCache:
    """The scheme's side: the teacher outputs of a batch are the stored answers to the views it was given."""

    def __init__(self, views: ReplayedViews, info: dict[str, Any]) -> None:
        self.views, self.details = views, info
        self.device = torch.device("cpu")
        self.build_seconds = float(info.get("build_seconds", 0.0))

    def get(self, index: Tensor) -> dict[str, Tensor]:
        return {"logits": self.views.teacher_logits(index).to(self.device, non_blocking=True)}

    def to(self, device: torch.device) -> ViewTeacherCache:
        self.device = torch.device(device)
        return self

    def restorable(self) -> bool:
        return False  # a resumed run reads (or recomputes, identically) the store

    def info(self) -> dict[str, Any]:
        return self.details


def replay_views(scheme: Any, views: ReplayedViews, val_set: Any, settings: Any, cache_dir: Any = None) -> None:
    """Fill `views` with the scheme's teacher's answers (from disk when a run with the same key stored them) and make
    the scheme read them; its validation logits are kept as distill.cache_teacher keeps them."""
    from kdkit import distributed
    from kdkit.trainer import acceleration
    from kdkit.trainer.batches import resolve_device
    from kdkit.trainer.teacher_cache import StoredOutputs, ValidationOutputs, default_cache_dir, split_parts

    device = distributed.local_device() if distributed.is_distributed() else resolve_device(settings.device)
    view = {"split": "train views", **views.spec, "precision": settings.precision,
            "channels_last": settings.channels_last, "device": device.type}
    directory = default_cache_dir() if cache_dir is None else cache_dir
    stored = StoredOutputs(directory, split_parts([scheme.teacher], views.renderer.base, view))
    found = stored.load(views.samples)
    start = time.perf_counter()
    if found is not None:
        views.use(found)
    else:
        scheme.teacher.to(device)

        def log_probs(x: Tensor) -> Tensor:
            x = x.to(device)
            x = acceleration.channels_last_input(x) if settings.channels_last else x
            with acceleration.autocast(settings.precision, device):
                logits = scheme.live_teacher_outputs(x)["logits"]
            return torch.log_softmax(logits.float(), dim=-1)

        views.use(views.compute(log_probs, settings.batch_size))
        if distributed.is_main():
            stored.save(views.outputs, time.perf_counter() - start)
    seconds = stored.build_seconds if found is not None else time.perf_counter() - start
    nbytes = sum(t.numel() * t.element_size() for t in views.outputs.values())  # type: ignore[union-attr]
    scheme.cache = ViewTeacherCache(views, {
        "path": str(stored.path), "samples": views.samples, "views": views.views, "bytes": nbytes,
        "build_seconds": round(seconds or 0.0, 3), "reused": found is not None, "complete": True})
    if val_set is not None:
        val_view = {"channels_last": settings.channels_last, "device": device.type, "split": "validation",
                    "outputs": []}
        scheme.val_teacher = ValidationOutputs(StoredOutputs(directory, split_parts([scheme.teacher], val_set,
                                                                                   val_view)), val_set,
                                               distributed.is_main())
