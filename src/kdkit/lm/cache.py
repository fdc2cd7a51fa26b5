"""A teacher's top-k logit cache on disk, for vocabularies too large to store every logit: the teacher runs once,
and distillation reads its sparse distribution back by row index instead of running it every epoch.

For every position of every training row the cache holds the teacher's k largest log-probabilities (temperature 1)
and their ids, plus the tail mass m = 1 - sum_{top k} p_t(v). Rows are written in shards of `shard_size` rows,
one safetensors file each (``shard_00000.safetensors`` ...: ``logprobs`` (n, L, k), ``ids`` (n, L, k),
``tail`` (n, L)), with ``meta.json`` (k, rows, sequence length, vocabulary, dtype, build seconds, bytes on disk).

The divergence on the cache compares the two distributions on k + 1 buckets, the teacher's top-k ids and
"everything else":

    P = (p_t(v_1), ..., p_t(v_k), m_t),   Q = (p_s(v_1), ..., p_s(v_k), 1 - sum_j p_s(v_j))
    L = mean_{valid positions} sum_{b = 1}^{k + 1} f(log P_b, log Q_b)

with f the elementwise term of forward_kl, reverse_kl, jsd or tv. With k = V the tail is empty and L equals the
full-vocabulary loss at T = 1.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from kdkit.errors import ConfigError, DataError
from kdkit.losses.token_divergence import TokenDivergence, token_mask
from kdkit.metrics import model_device

TAIL_FLOOR = 1e-12  # log of a zero tail mass (k = V) would be -inf; 0 * log(1e-12) is 0 in the sums


@dataclass
class CacheInfo:
    directory: Path
    k: int
    rows: int
    seq_len: int
    vocab_size: int
    bytes: int
    seconds: float


def _id_dtype(vocab: int) -> torch.dtype:
    return torch.int16 if vocab <= torch.iinfo(torch.int16).max else torch.int32


@torch.no_grad()
def build_topk_cache(teacher: nn.Module, dataset: Dataset, directory: str | Path, k: int = 32,
                     batch_size: int = 64, shard_size: int = 4096, dtype: torch.dtype = torch.float16,
                     device: torch.device | None = None) -> CacheInfo:
    """Run the frozen teacher over `dataset` (rows (x, y), in order) and write its top-k cache to `directory`."""
    if k < 1:
        raise ConfigError(f"top-k cache needs k >= 1, got {k}")
    if shard_size < 1 or batch_size < 1:
        raise ConfigError("shard_size and batch_size must be >= 1")
    if dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ConfigError(f"cache dtype must be float16, bfloat16 or float32, got {dtype}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("shard_*.safetensors"):
        old.unlink()
    device = device or model_device(teacher)
    was_training = teacher.training
    teacher.eval()
    start = time.perf_counter()
    buffers: dict[str, list[Tensor]] = {"logprobs": [], "ids": [], "tail": []}
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
        tail = (1.0 - top.exp().sum(-1)).clamp_min(0.0)
        for i in range(0, len(x)):
            buffers["logprobs"].append(top[i:i + 1].to(dtype).cpu())
            buffers["ids"].append(ids[i:i + 1].to(_id_dtype(vocab)).cpu())
            buffers["tail"].append(tail[i:i + 1].cpu())
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
    meta = {"k": min(k, vocab), "rows": rows, "seq_len": seq_len, "vocab_size": vocab, "shard_size": shard_size,
            "dtype": str(dtype).removeprefix("torch."), "build_seconds": seconds, "bytes": size, "temperature": 1.0}
    (directory / "meta.json").write_text(json.dumps(meta, indent=1))
    return CacheInfo(directory, meta["k"], rows, seq_len, vocab, size, seconds)


class TopKCache:
    """Reads a cache written by :func:`build_topk_cache`; `get(index)` returns (logprobs, ids, tail) of those rows
    as float32, int64, float32. Shards are loaded on first use and kept in memory."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        meta_path = self.directory / "meta.json"
        if not meta_path.is_file():
            raise DataError(f"{self.directory} is not a top-k cache (no meta.json); build it with build_topk_cache")
        self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        self.k, self.rows, self.shard_size = int(self.meta["k"]), int(self.meta["rows"]), int(self.meta["shard_size"])
        self.vocab_size = int(self.meta["vocab_size"])
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

    def get(self, index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        index = torch.as_tensor(index).reshape(-1).cpu()
        if len(index) and (int(index.min()) < 0 or int(index.max()) >= self.rows):
            raise DataError(f"top-k cache holds rows 0..{self.rows - 1}; asked for row {int(index.max())}")
        out: dict[str, list[Tensor]] = {"logprobs": [], "ids": [], "tail": []}
        for i in index.tolist():
            shard = self._shard(i // self.shard_size)
            for key in out:
                out[key].append(shard[key][i % self.shard_size])
        return (torch.stack(out["logprobs"]).float(), torch.stack(out["ids"]).long(), torch.stack(out["tail"]).float())


def topk_tail_divergence(divergence: TokenDivergence, student: Tensor, t_logprobs: Tensor, t_ids: Tensor,
                         t_tail: Tensor, target: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
    """Mean over valid positions of the divergence between the teacher's top-k + tail buckets and the student's
    probabilities of the same buckets (see the module docstring). Temperature 1: the cache holds p_t at T = 1."""
    if divergence.T != 1.0:
        raise ConfigError("the top-k cache holds the teacher's log-probabilities at temperature 1; use T: 1")
    valid = token_mask(student, target, mask)
    if not bool(valid.any()):
        return student.sum() * 0.0
    log_s = torch.log_softmax(student[valid].float(), -1)
    s_top = log_s.gather(-1, t_ids[valid])
    s_tail = torch.log((1.0 - s_top.exp().sum(-1)).clamp_min(TAIL_FLOOR))
    t_top = t_logprobs[valid]
    t_tail_log = torch.log(t_tail[valid].clamp_min(TAIL_FLOOR))
    log_p = torch.cat([t_top, t_tail_log[:, None]], -1)
    log_q = torch.cat([s_top, s_tail[:, None]], -1)
    value = divergence.elementwise(log_p, log_q).sum(-1).mean()
    return value


__all__ = ["CacheInfo", "TopKCache", "build_topk_cache", "topk_tail_divergence"]
