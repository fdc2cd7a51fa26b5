"""Saving and loading weights: safetensors, written atomically; torch files only with ``weights_only=True``."""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from kdkit.errors import ModelError
from kdkit.io.storage import storage_errors

_UMASK = os.umask(0)
os.umask(_UMASK)


def default_mode(path: str | os.PathLike) -> None:
    """Give a temp file the permissions a plain open() would (mkstemp makes 0600 files): 0666 less the umask."""
    os.chmod(path, 0o666 & ~_UMASK)


def _atomic(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Run `write(temp_path)` beside `path`, then rename over it: readers see the old file or the new one,
    never a torn one, and a failed write leaves the old file and no temp file behind."""
    path = Path(path)
    with storage_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            write(tmp)
            default_mode(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return path


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write text or bytes atomically (temp file + rename)."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    return _atomic(path, lambda tmp: Path(tmp).write_bytes(payload))


def save_state(state: Mapping[str, Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Write a state dict as safetensors via a temp file + rename, so a crash never leaves a torn file;
    `metadata` (strings) goes into the file's header."""
    # safetensors refuses shared storage; clone makes every tensor its own contiguous buffer
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    return _atomic(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def save_weights(model: nn.Module, path: str | os.PathLike) -> Path:
    return save_state(model.state_dict(), path)


def read_state(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read weights from .safetensors, or a torch checkpoint with weights_only=True (no unpickling of code)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt, truncated or pickled-code files all end up here as one line
        if "weights_only" in str(err) or isinstance(err, pickle.UnpicklingError):
            # PyTorch's own advice (weights_only=False) would unpickle, i.e. run whatever code the file holds
            raise ModelError(
                f"cannot read weights from {path}: a pickled checkpoint holding more than tensors, which kdkit does "
                "not unpickle (that can run code); if you trust its source, convert it to safetensors once: load "
                "it in your own Python session with pickles allowed, then save its state dict with "
                "safetensors.torch.save_file(state_dict, 'OUT.safetensors') and give kdkit that file"
            ) from None
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"cannot read weights from {path}: {first}") from None
    # common wrappers: {"state_dict": ...}, {"model": ...}
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ModelError(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
    return {k: v for k, v in state.items() if isinstance(v, Tensor)}


WRAPPED = "model."  # the word model inside kdkit.models.raw_text.WordTokenized (a word model reading raw text)


def wrapper_keys(state: dict[str, Tensor], own: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """`state` keyed as `own` is when they differ only by the raw-text wrapper: the weights of a bare word model
    go into a wrapped one under ``model.``, and a wrapped one's into a bare one without it."""
    if not state or any(k in own for k in state):
        return state
    if own and all(k.startswith(WRAPPED) for k in own) and all(WRAPPED + k in own for k in state):
        return {WRAPPED + k: v for k, v in state.items()}
    if all(k.startswith(WRAPPED) for k in state) and all(k.removeprefix(WRAPPED) in own for k in state):
        return {k.removeprefix(WRAPPED): v for k, v in state.items()}
    return state


def load_weights(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> nn.Module:
    """Load weights into `model`; a `module.` prefix (DDP) is stripped, the raw-text wrapper's ``model.`` added or
    stripped to fit (see wrapper_keys); mismatches give one clear line."""
    own = model.state_dict()
    state = wrapper_keys({k.removeprefix("module."): v for k, v in read_state(path).items()}, own)
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items() if k in own
             and own[k].shape != v.shape]
    if wrong:
        raise ModelError(f"{path} does not fit {type(model).__name__}: shape mismatch in {wrong[0]}"
                         f"{f' (+{len(wrong) - 1} more)' if len(wrong) > 1 else ''}")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if strict and (missing or unexpected):
        raise ModelError(
            f"{path} does not fit {type(model).__name__}: missing {missing[:3]}, unexpected {unexpected[:3]}; "
            "check the model name and its arguments"
        )
    return model
