"""Teacher outputs computed once and kept: per sample in memory for one fit, and on disk across runs.

A frozen teacher gives the same outputs for the same inputs, so every seed, student, `kdkit tune` trial and rerun
that distils from it can share them. On disk they are keyed by what decides them, and by nothing else:

    teacher   the state dict (names, dtypes, shapes and bytes) and the architecture (class and repr) of every teacher
    data      the input tensors of the split, in sample order (so preprocessing is in it; labels are not)
    view      which outputs are kept (tapped module paths, ensemble weights), precision, memory format, device kind,
              augmentation and the torch version

A changed key is another file, so stale outputs are never read. A file is safetensors, written atomically, with a
checksum of its tensors in the header; one that fails to parse or to match is reported in one warning line and
rebuilt. The directory is `distill.cache_dir`, else ``$KDKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/kdkit/teacher``
(``~/.cache/kdkit/teacher``). Nothing is ever evicted: delete the directory to reclaim the space.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from kdkit.errors import ConfigError, KdkitWarning

FORMAT = "kdkit-teacher-outputs/1"
CACHE_ENV = "KDKIT_CACHE_DIR"


def default_cache_dir() -> Path:
    """$KDKIT_CACHE_DIR, else the user's cache directory (XDG) / kdkit / teacher."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kdkit" / "teacher"


def _feed(h: Any, name: str, t: Tensor) -> None:
    """A tensor's identity for hashing: name, dtype, shape and raw bytes (bf16 and friends as their bytes)."""
    flat = t.detach().cpu().contiguous().reshape(-1)
    h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")


def tensors_digest(tensors: Mapping[str, Tensor]) -> str:
    """Hex digest of named tensors, independent of their order in the mapping."""
    h = hashlib.blake2b(digest_size=20)
    for name in sorted(tensors):
        _feed(h, name, tensors[name])
    return h.hexdigest()


def teachers_digest(teachers: Iterable[nn.Module]) -> str:
    """Weights and architecture of the teachers, in order: the same state dict in another architecture (another
    activation, say) must not share outputs, so the class and the module tree's repr are part of it."""
    h = hashlib.blake2b(digest_size=20)
    for model in teachers:
        h.update(f"{type(model).__module__}.{type(model).__qualname__}\n{model!r}\n".encode())
        h.update(tensors_digest(model.state_dict()).encode())
    return h.hexdigest()


def inputs_digest(dataset: Any, batch_size: int = 512) -> str:
    """The split's input tensors in sample order, read through a plain loader as training reads them."""
    from torch.utils.data import DataLoader

    from kdkit.trainer.batches import split_batch

    h = hashlib.blake2b(digest_size=20)
    count = 0
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        x, _ = split_batch(batch, torch.device("cpu"))
        _feed(h, "x", x)
        count += len(x)
    h.update(f"samples {count}".encode())
    return h.hexdigest()


def cache_key(parts: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _warn(path: Path, why: str) -> None:
    warnings.warn(f"teacher cache {path} is damaged ({why}); rebuilding it", KdkitWarning, stacklevel=3)


class StoredOutputs:
    """One cache file: teacher outputs of a split (tensors with one row per sample) under one key."""

    def __init__(self, directory: str | os.PathLike, parts: Mapping[str, Any]) -> None:
        self.parts = dict(parts)
        self.key = cache_key(self.parts)
        self.path = Path(directory).expanduser() / f"{self.key}.safetensors"
        self.build_seconds: float | None = None

    def load(self, samples: int) -> dict[str, Tensor] | None:
        """The stored outputs, or None when there are none yet or the file is damaged (then warned and removed)."""
        from safetensors import safe_open

        if not self.path.is_file():
            return None
        try:
            with safe_open(str(self.path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (a safe_open handle is not iterable)
        except Exception as err:  # truncated, overwritten, not safetensors: never used, rebuilt
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            return self._damaged(f"unreadable: {first}")
        if meta.get("format") != FORMAT or meta.get("key") != self.key:
            return self._damaged("its header names another key")
        if meta.get("checksum") != tensors_digest(tensors):
            return self._damaged("checksum mismatch")
        if not tensors or any(len(t) != samples for t in tensors.values()):
            return self._damaged(f"not {samples} rows")
        self.build_seconds = float(meta.get("build_seconds", "nan"))
        return tensors

    def _damaged(self, why: str) -> None:
        _warn(self.path, why)
        self.path.unlink(missing_ok=True)
        return None

    def save(self, tensors: Mapping[str, Tensor], build_seconds: float) -> None:
        from kdkit.io.checkpoint import save_state

        cpu = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        meta = {"format": FORMAT, "key": self.key, "checksum": tensors_digest(cpu),
                "build_seconds": f"{build_seconds:.6f}", "parts": json.dumps(self.parts, default=str)}
        save_state(cpu, self.path, metadata=meta)
        self.build_seconds = build_seconds


def split_parts(teachers: Iterable[nn.Module], dataset: Any, view: Mapping[str, Any]) -> dict[str, Any]:
    """The key parts of one split's outputs (see the module docstring)."""
    return {"format": FORMAT, "teacher": teachers_digest(teachers), "data": inputs_digest(dataset),
            "samples": len(dataset), "view": {**view, "torch": torch.__version__}}


class TeacherCache:
    """Teacher outputs stored per sample index, on the device they were computed on (or moved to by `to`)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.filled = torch.zeros(size, dtype=torch.bool)
        self.complete = False
        self.store: dict[str, Tensor] = {}
        self.build_seconds = 0.0  # time spent in teacher forwards filling it

    def get(self, index: Tensor) -> dict[str, Tensor] | None:
        if not self.complete:  # once every sample is in, no step pays for the check (an index and a sync)
            if not bool(self.filled[index.cpu()].all()):
                return None
            self.complete = bool(self.filled.all())
        return {k: v.index_select(0, index.to(v.device)) for k, v in self.store.items()}

    def put(self, index: Tensor, outputs: dict[str, Tensor]) -> None:
        for key, value in outputs.items():
            if key not in self.store:
                self.store[key] = value.new_zeros((self.size, *value.shape[1:]))
            elif self.store[key].shape[1:] != value.shape[1:]:
                # e.g. per-token features of texts padded per batch: one slot per sample cannot hold them
                raise ConfigError(
                    f"the teacher's '{key}' output changes shape between batches ({tuple(self.store[key].shape[1:])} "
                    f"then {tuple(value.shape[1:])}), so it cannot be cached per sample; build the scheme without "
                    "cache_size (distill.cache_teacher: false) or cache the logits only")
            self.store[key][index.to(value.device)] = value
        self.filled[index.cpu()] = True

    def to(self, device: torch.device) -> TeacherCache:
        self.store = {k: v.to(device) for k, v in self.store.items()}
        return self

    @property
    def nbytes(self) -> int:
        return sum(v.numel() * v.element_size() for v in self.store.values())

    def restorable(self) -> bool:
        """Whether a resumed fit needs this cache's tensors from the resumable checkpoint (the disk has them)."""
        return True


class PersistentTeacherCache(TeacherCache):
    """A TeacherCache read from its file when there is one, and written to it once every sample is filled (at the
    end of the first epoch that sees them all: the outputs are exactly those the live teacher gave that run)."""

    def __init__(self, size: int, stored: StoredOutputs, write: bool = True) -> None:
        super().__init__(size)
        self.stored, self.write = stored, write
        tensors = stored.load(size)
        self.reused = tensors is not None
        self.saved = self.reused
        if tensors is not None:
            self.store = tensors
            self.filled[:] = True
            self.build_seconds = stored.build_seconds or 0.0

    def put(self, index: Tensor, outputs: dict[str, Tensor]) -> None:
        super().put(index, outputs)
        if not self.saved and self.write and bool(self.filled.all()):
            self.stored.save(self.store, self.build_seconds)
            self.saved = True

    def restorable(self) -> bool:
        return not self.saved

    def info(self) -> dict[str, Any]:
        """What results.json and the console report: where, how big, how long it took, and whether it was reused."""
        return {"path": str(self.stored.path), "samples": self.size, "bytes": self.nbytes,
                "build_seconds": round(self.build_seconds, 3), "reused": self.reused, "complete": self.saved}


class ValidationOutputs:
    """The fixed teacher's logits on the validation split: computed at the first validation of a fit and reused
    at every later one (and, with a file, by later fits and runs). `dataset` is the split the file's key was made
    from; another validation set is memoised in memory only, by identity."""

    def __init__(self, stored: StoredOutputs | None = None, dataset: Any = None, write: bool = True) -> None:
        self.stored, self.dataset, self.write = stored, dataset, write
        self.memo: dict[int, Tensor] = {}
        self.reused = False
        self.build_seconds = 0.0

    def get(self, dataset: Any) -> Tensor | None:
        if id(dataset) in self.memo and len(self.memo[id(dataset)]) == len(dataset):
            return self.memo[id(dataset)]
        if self.stored is not None and dataset is self.dataset:
            tensors = self.stored.load(len(dataset))
            if tensors is not None and "logits" in tensors:
                self.reused, self.build_seconds = True, self.stored.build_seconds or 0.0
                self.memo[id(dataset)] = tensors["logits"]
                return tensors["logits"]
        return None

    def put(self, dataset: Any, logits: Tensor, seconds: float) -> None:
        self.memo[id(dataset)] = logits
        self.build_seconds = seconds
        if self.stored is not None and dataset is self.dataset and self.write:
            self.stored.save({"logits": logits}, seconds)

    def info(self) -> dict[str, Any] | None:
        if self.stored is None or self.dataset is None:
            return None
        logits = self.memo.get(id(self.dataset))
        return {"path": str(self.stored.path), "samples": len(self.dataset),
                "bytes": 0 if logits is None else logits.numel() * logits.element_size(),
                "build_seconds": round(self.build_seconds, 3), "reused": self.reused,
                "complete": logits is not None}


def describe(info: Mapping[str, Any], split: str) -> str:
    """One console line about a split's cache."""
    how = "reused" if info["reused"] else "built" if info["complete"] else "not complete (not written)"
    views = f" x {info['views']} views" if "views" in info else ""
    return (f"teacher cache ({split}): {how}, {info['samples']:,} samples{views}, {info['bytes'] / 2**20:.2f} MiB, "
            f"built in {info['build_seconds']:.2f} s: {info['path']}")


def persist_teacher_cache(scheme: Any, train_set: Any, val_set: Any = None, settings: Any = None,
                          cache_dir: str | os.PathLike | None = None) -> None:
    """Give an offline or multi-teacher scheme built with ``cache_size`` caches kept on disk: its teacher outputs
    on `train_set` (the Indexed set it trains on) and its teacher logits on `val_set` (the validation loader's
    dataset), read when an earlier run made them with the same key and written when this one completes them.
    `settings` (TrainSettings) gives precision, channels-last, augmentation and device, which are part of the key."""
    from kdkit import distributed
    from kdkit.terms import tapped_paths
    from kdkit.trainer.batches import resolve_device
    from kdkit.trainer.settings import TrainSettings

    if getattr(scheme, "cache", None) is None:
        return
    s = settings or TrainSettings()
    device = distributed.local_device() if distributed.is_distributed() else resolve_device(s.device)
    teachers = list(getattr(scheme, "teachers", None) or [scheme.teacher])
    view: dict[str, Any] = {"channels_last": s.channels_last, "device": device.type}
    if len(teachers) > 1:  # an ensemble's logits depend on how it is formed
        view.update(combine=scheme.combine, weights=scheme.weights)
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    write = distributed.is_main()  # every process reads; one writes
    train_view = {**view, "split": "train", "outputs": sorted(tapped_paths(scheme.terms)[1]),
                  "precision": s.precision, "augment": s.augment}  # the training forward runs under autocast
    scheme.cache = PersistentTeacherCache(len(train_set), StoredOutputs(directory, split_parts(
        teachers, train_set, train_view)), write)
    if val_set is not None:  # validation always runs in float32 and keeps the logits only
        val_view = {**view, "split": "validation", "outputs": []}
        scheme.val_teacher = ValidationOutputs(StoredOutputs(directory, split_parts(teachers, val_set, val_view)),
                                               val_set, write)


def cache_report(scheme: Any) -> dict[str, Any] | None:
    """results.json's `teacher_cache`: each split's info, when the scheme's caches are kept on disk."""
    cache, val = getattr(scheme, "cache", None), getattr(scheme, "val_teacher", None)
    if not isinstance(cache, PersistentTeacherCache) and not hasattr(cache, "views"):  # views: kdkit.trainer.view_cache
        return None
    out = {"train": cache.info()}
    if isinstance(val, ValidationOutputs) and val.info() is not None:
        out["validation"] = val.info()
    return out
