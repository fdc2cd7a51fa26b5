"""A teacher's top-k logit cache on disk, for vocabularies too large to store every logit: the teacher runs once,
and distillation reads its sparse distribution back by row index instead of running it every epoch.

For every position of every training row the cache holds the teacher's k largest log-probabilities (temperature 1,
normalised over the whole vocabulary, so they are the teacher's exact log-probabilities of those ids) and their ids,
plus the tail mass m_t = 1 - sum_{top k} p_t(v) (computed in float32 before rounding, so exact up to float32). With
``tail_samples = n`` it also holds n ids drawn (with replacement, seeded) from the teacher's tail, p_t restricted to
the ids outside the top k, and the teacher's log-probabilities of those ids. Rows are written in shards of
`shard_size` rows, one safetensors file each (``shard_00000.safetensors`` ...: ``logprobs`` (n, L, k), ``ids``
(n, L, k), ``tail`` (n, L), and ``tail_ids``, ``tail_logprobs`` (n, L, n_samples) when sampled), with ``meta.json``
(k, tail samples, rows, sequence length, vocabulary, dtype, build seconds, bytes on disk).

What the cache cannot hold is how the teacher spreads m_t over the V - k tail ids. Three estimators of a token
divergence D = sum_v f(log p_t(v), log p_s(v)) (f the elementwise term of forward_kl, reverse_kl, jsd or tv):

``bucket``: the tail is one bucket, compared with the student's mass outside the same ids:

    P = (p_t(v_1), ..., p_t(v_k), m_t),   Q = (p_s(v_1), ..., p_s(v_k), 1 - sum_j p_s(v_j))
    D_bucket = sum_{b = 1}^{k + 1} f(log P_b, log Q_b)

  Merging ids can only lose information (the data-processing inequality of f-divergences), so D_bucket <= D:
  a lower bound, loose when the teacher's tail is flat (D_bucket / D was 0.07 for k = 32 of V = 5,000 with
  standard-normal logits); what it misses is m_t * KL(p_t | tail || p_s | tail) for forward KL. Its gradient on
  the tail ids only moves their total.

``uniform``: the teacher's tail mass is spread evenly over the V - k ids, p_t(v) = m_t / (V - k), and D is the
  full-vocabulary sum with that teacher. Exact when the teacher's tail is flat; neither bound in general.

``sampled`` (needs ``tail_samples``): the tail sum by importance sampling from the teacher's own tail, with
  v_1..v_n ~ p_t(v) / m_t over the tail ids:

    D_sampled = sum_{top k} f(log p_t(v), log p_s(v)) + (1 / n) sum_j f(log p_t(v_j), log p_s(v_j)) m_t / p_t(v_j)

  Unbiased: its expectation over the draws is D, for every f, and its gradient's is D's gradient (the draws are
  fixed when the cache is built, so one draw per position is reused every epoch). Its variance is lowest for
  forward KL (the weight m_t / p_t(v_j) meets a factor p_t(v_j)); for reverse KL and TV, ids the student likes and
  the teacher rarely samples carry large weights.

With k = V the tail is empty and the three equal the full-vocabulary loss at T = 1.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from kdkit.errors import ConfigError, DataError
from kdkit.losses.token_divergence import TokenDivergence, token_mask
from kdkit.measure.cost import model_device

TAIL_FLOOR = 1e-12  # log of a zero tail mass (k = V) would be -inf; 0 * log(1e-12) is 0 in the sums
TAILS = ("bucket", "uniform", "sampled")
Tail = Literal["bucket", "uniform", "sampled"]


@dataclass
class CacheInfo:
    directory: Path
    k: int
    tail_samples: int
    rows: int
    seq_len: int
    vocab_size: int
    bytes: int
    seconds: float


def _id_dtype(vocab: int) -> torch.dtype:
    return torch.int16 if vocab <= torch.iinfo(torch.int16).max else torch.int32


def _check_options(k: int, batch_size: int, shard_size: int, dtype: torch.dtype, tail_samples: int) -> None:
    if k < 1:
        raise ConfigError(f"top-k cache needs k >= 1, got {k}")
    if tail_samples < 0:
        raise ConfigError(f"tail_samples must be >= 0, got {tail_samples}")
    if shard_size < 1 or batch_size < 1:
        raise ConfigError("shard_size and batch_size must be >= 1")
    if dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ConfigError(f"cache dtype must be float16, bfloat16 or float32, got {dtype}")


@torch.no_grad()
def build_topk_cache(teacher: nn.Module, dataset: Dataset, directory: str | Path, k: int = 32,
                     batch_size: int = 64, shard_size: int = 4096, dtype: torch.dtype = torch.float16,
                     device: torch.device | None = None, tail_samples: int = 8, seed: int = 0) -> CacheInfo:
    """Run the frozen teacher over `dataset` (rows (x, y), in order) and write its top-k cache to `directory`,
    with `tail_samples` ids per position drawn from the teacher's tail (seeded by `seed`; 0: none, for the
    bucket and uniform tails only)."""
    _check_options(k, batch_size, shard_size, dtype, tail_samples)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("shard_*.safetensors"):
        old.unlink()
    device = device or model_device(teacher)
    was_training = teacher.training
    teacher.eval()
    start = time.perf_counter()
    buffers: dict[str, list[Tensor]] = {"logprobs": [], "ids": [], "tail": []}
    if tail_samples:
        buffers.update(tail_ids=[], tail_logprobs=[])
    generator = torch.Generator().manual_seed(seed)
    pending, shard, rows, vocab, seq_len = 0, 0, 0, 0, 0

    def flush() -> None:
        nonlocal shard, pending
        if pending:
            tensors = {key: torch.cat(parts).contiguous() for key, parts in buffers.items()}
            save_file(tensors, str(directory / f"shard_{shard:05d}.safetensors"))
            shard, pending = shard + 1, 0
            for parts in buffers.values():
                parts.clear()

    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        log_p = torch.log_softmax(teacher(x.to(device)).float(), -1)
        vocab, seq_len = log_p.shape[-1], log_p.shape[1]
        kk = min(k, vocab)
        top, ids = log_p.topk(kk, dim=-1)
        parts = {"logprobs": top.to(dtype), "ids": ids.to(_id_dtype(vocab)),
                 "tail": (1.0 - top.exp().sum(-1)).clamp_min(0.0)}
        if tail_samples:
            drawn = _draw_tail(log_p, ids, tail_samples, generator)
            parts.update(tail_ids=drawn.to(_id_dtype(vocab)), tail_logprobs=log_p.gather(-1, drawn).to(dtype))
        for i in range(0, len(x)):
            for key, value in parts.items():
                buffers[key].append(value[i:i + 1].cpu())
            pending += 1
            rows += 1
            if pending == shard_size:
                flush()
    flush()
    teacher.train(was_training)
    if rows == 0:
        raise DataError("cannot build a top-k cache of an empty dataset")
    seconds = time.perf_counter() - start
    size = sum(f.stat().st_size for f in directory.glob("shard_*.safetensors"))
    meta = {"k": min(k, vocab), "tail_samples": tail_samples,
            "rows": rows, "seq_len": seq_len, "vocab_size": vocab, "shard_size": shard_size,
            "dtype": str(dtype).removeprefix("torch."), "build_seconds": seconds, "bytes": size, "temperature": 1.0}
    (directory / "meta.json").write_text(json.dumps(meta, indent=1))
    return CacheInfo(directory, meta["k"], tail_samples, rows, seq_len, vocab, size, seconds)


def _draw_tail(log_p: Tensor, top_ids: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """n ids per position drawn with replacement from p_t restricted to the ids outside `top_ids` (uniformly over
    them where that mass underflows to 0, and id 0 where there are none: k = V, whose tail weight m_t is 0)."""
    probs = log_p.detach().float().cpu().exp().scatter(-1, top_ids.cpu(), 0.0).reshape(-1, log_p.shape[-1])
    empty = probs.sum(-1) <= 0
    if bool(empty.any()):
        outside = torch.ones_like(probs[empty]).scatter(-1, top_ids.cpu().reshape(-1, top_ids.shape[-1])[empty], 0.0)
        outside[outside.sum(-1) <= 0, 0] = 1.0
        probs[empty] = outside
    drawn = torch.multinomial(probs, n, replacement=True, generator=generator)
    return drawn.reshape(*log_p.shape[:-1], n).to(log_p.device)


class TopKCache:
    """Reads a cache written by :func:`build_topk_cache`; `get(index)` returns (logprobs, ids, tail) of those rows
    as float32, int64, float32, and `samples(index)` the tail draws (ids int64, teacher log-probabilities float32),
    or None when the cache has none. Shards are loaded on first use and kept in memory."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        meta_path = self.directory / "meta.json"
        if not meta_path.is_file():
            raise DataError(f"{self.directory} is not a top-k cache (no meta.json); build it with build_topk_cache")
        self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        self.k, self.rows, self.shard_size = int(self.meta["k"]), int(self.meta["rows"]), int(self.meta["shard_size"])
        self.vocab_size = int(self.meta["vocab_size"])
        self.tail_samples = int(self.meta.get("tail_samples", 0))
        self._shards: dict[int, dict[str, Tensor]] = {}

    def __len__(self) -> int:
        return self.rows

    @property
    def bytes(self) -> int:
        return int(self.meta["bytes"])

    def _shard(self, number: int) -> dict[str, Tensor]:
        if number not in self._shards:
            path = self.directory / f"shard_{number:05d}.safetensors"
            if not path.is_file():
                raise DataError(f"top-k cache shard {path} is missing; rebuild the cache")
            self._shards[number] = load_file(str(path))
        return self._shards[number]

    def _rows(self, index: Tensor, keys: tuple[str, ...]) -> list[Tensor]:
        index = torch.as_tensor(index).reshape(-1).cpu()
        if len(index) and (int(index.min()) < 0 or int(index.max()) >= self.rows):
            raise DataError(f"top-k cache holds rows 0..{self.rows - 1}; asked for row {int(index.max())}")
        out: dict[str, list[Tensor]] = {key: [] for key in keys}
        for i in index.tolist():
            shard = self._shard(i // self.shard_size)
            for key in keys:
                out[key].append(shard[key][i % self.shard_size])
        return [torch.stack(out[key]) for key in keys]

    def get(self, index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        logprobs, ids, tail = self._rows(index, ("logprobs", "ids", "tail"))
        return logprobs.float(), ids.long(), tail.float()

    def samples(self, index: Tensor) -> tuple[Tensor, Tensor] | None:
        if not self.tail_samples:
            return None
        ids, logprobs = self._rows(index, ("tail_ids", "tail_logprobs"))
        return ids.long(), logprobs.float()


def _bucket(elementwise, log_s: Tensor, t_top: Tensor, t_ids: Tensor, t_tail: Tensor) -> Tensor:
    s_top = log_s.gather(-1, t_ids)
    s_tail = torch.log((1.0 - s_top.exp().sum(-1)).clamp_min(TAIL_FLOOR))
    log_p = torch.cat([t_top, torch.log(t_tail.clamp_min(TAIL_FLOOR))[:, None]], -1)
    return elementwise(log_p, torch.cat([s_top, s_tail[:, None]], -1)).sum(-1)


def _uniform(elementwise, log_s: Tensor, t_top: Tensor, t_ids: Tensor, t_tail: Tensor) -> Tensor:
    spread = max(log_s.shape[-1] - t_ids.shape[-1], 1)
    # a tail mass within the rounding of 1 - sum(top k) in float32 is 0 (e.g. every other id masked)
    mass = torch.where(t_tail > t_ids.shape[-1] * torch.finfo(torch.float32).eps, t_tail, 0.0)
    flat = torch.log(mass) - math.log(spread)
    log_p = flat[:, None].expand_as(log_s).scatter(-1, t_ids, t_top)
    return elementwise(log_p, log_s).sum(-1)


def _sampled(elementwise, log_s: Tensor, t_top: Tensor, t_ids: Tensor, t_tail: Tensor, drawn: Tensor,
             drawn_logprobs: Tensor) -> Tensor:
    top = elementwise(t_top, log_s.gather(-1, t_ids)).sum(-1)
    weight = torch.exp(torch.log(t_tail)[:, None] - drawn_logprobs)  # m_t / p_t(v_j)
    # a draw of probability 0 weighs nothing: its tail underflowed (or is masked) and the draws were stand-ins, while
    # t_tail may still hold float rounding
    counts = (t_tail[:, None] > 0) & torch.isfinite(drawn_logprobs)
    weight = torch.where(counts, weight, 0.0)
    t_drawn = torch.where(counts, drawn_logprobs, 0.0)  # finite stand-ins where the weight is 0
    s_drawn = torch.where(counts, log_s.gather(-1, drawn), 0.0)
    return top + (elementwise(t_drawn, s_drawn) * weight).mean(-1)


def topk_tail_divergence(divergence: TokenDivergence, student: Tensor, t_logprobs: Tensor, t_ids: Tensor,
                         t_tail: Tensor, target: Tensor | None = None, mask: Tensor | None = None,
                         tail: Tail = "bucket", samples: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """Mean over valid positions of the divergence between the teacher's cached top-k (with its tail estimated by
    `tail`: bucket, uniform or sampled, see the module docstring; `samples` = (ids, teacher log-probabilities)
    drawn from the tail, for sampled) and the student. Temperature 1: the cache holds p_t at T = 1."""
    if divergence.T != 1.0:
        raise ConfigError("the top-k cache holds the teacher's log-probabilities at temperature 1; use T: 1")
    if tail not in TAILS:
        raise ConfigError(f"tail estimator must be one of {', '.join(TAILS)}, got {tail!r}")
    if tail == "sampled" and samples is None:
        raise ConfigError("tail: sampled needs a cache built with tail_samples > 0")
    valid = token_mask(student, target, mask)
    if not bool(valid.any()):
        return student.sum() * 0.0
    log_s = torch.log_softmax(student[valid].float(), -1)
    parts = (divergence.elementwise, log_s, t_logprobs[valid], t_ids[valid], t_tail[valid])
    if tail == "bucket":
        return _bucket(*parts).mean()
    if tail == "uniform":
        return _uniform(*parts).mean()
    assert samples is not None
    return _sampled(*parts, samples[0][valid], samples[1][valid]).mean()


__all__ = ["TAILS", "CacheInfo", "Tail", "TopKCache", "build_topk_cache", "topk_tail_divergence"]
