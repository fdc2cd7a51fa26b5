"""Resumable training state: everything :func:`kdkit.fit` needs to continue a killed run and end with the same
weights, bit for bit, as a run that was never interrupted.

One file per stage, ``checkpoints/<name>.resume.safetensors``, written atomically at the end of every epoch (and every
``checkpoint_every_steps`` steps): tensors (model, extras, best weights, optimizer moments, RNG states, the scheme's
own state such as an EMA teacher or a teacher cache, the epoch's running sums) as safetensors, and everything else
(epoch, step, best value, early-stopping counter, history, scheduler counters, the optimizer's param groups, Python
and NumPy RNG states) as JSON in the file's metadata. One file, so a checkpoint is never half old and half new; no
pickle anywhere, so loading a checkpoint cannot run code.

Under torchrun rank 0 writes the file for all processes: what is the same everywhere (weights, optimizer, epoch and
step, which fixes the DistributedSampler's position) once, and what each process has of its own (random streams,
running sums, scheme state) once per rank, gathered at the checkpoint (:func:`gather_ranks`); on resume every process
reads the file and takes its own part (:func:`for_rank`).

Whether fit resumes is a flag of the call (``fit(..., resume=True)``) or of the surrounding run
(:func:`resuming`), so that the pipeline's many fits (teacher, student alone, assistants, generations...) all resume
without every scheme passing a flag along.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, safe_open
from torch import Tensor

from kdkit.errors import RunDirError
from kdkit.io.checkpoint import save_state

FORMAT = 1
_RESUME: ContextVar[bool] = ContextVar("kdkit_resume", default=False)


@contextmanager
def resuming(enabled: bool = True) -> Iterator[None]:
    """Within this block, every fit that is given a run directory resumes from its stage's checkpoint."""
    token = _RESUME.set(enabled)
    try:
        yield
    finally:
        _RESUME.reset(token)


def resume_requested(flag: bool | None) -> bool:
    """fit's own `resume` argument when given, else the surrounding :func:`resuming` block's."""
    return _RESUME.get() if flag is None else flag


def rng_state(augment: torch.Generator, loader: torch.Generator | None) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(tensors, JSON) of every random stream a training step draws from."""
    tensors = {"rng.torch": torch.get_rng_state(), "rng.augment": augment.get_state()}
    if loader is not None:
        tensors["rng.loader"] = loader.get_state()
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    info = {"python": [version, list(internal), gauss],
            "numpy": [kind, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)]}
    return tensors, info


def set_rng_state(tensors: dict[str, Tensor], info: dict[str, Any], augment: torch.Generator,
                  loader: torch.Generator | None) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    augment.set_state(tensors["rng.augment"])
    if loader is not None and "rng.loader" in tensors:
        loader.set_state(tensors["rng.loader"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
    version, internal, gauss = info["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = info["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The optimizer's per-parameter tensors (moments, step counts) and its param groups as JSON."""
    full = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entry in full["state"].items():
        for key, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"optim.{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": full["param_groups"], "scalars": scalars}


def load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], info: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for key, value in info["scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in info["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def scheduler_state(scheduler: Any) -> dict[str, Any]:
    """A LambdaLR's counters; its lambdas are code, rebuilt from the settings, not saved."""
    return {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}


def load_scheduler_state(scheduler: Any, info: dict[str, Any]) -> None:
    scheduler.load_state_dict({**info, "lr_lambdas": [None] * len(scheduler.lr_lambdas)})


def prefixed(prefix: str, state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {f"{prefix}.{k}": v for k, v in state.items()}


def unprefixed(prefix: str, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def save(path: Path, tensors: dict[str, Tensor], info: dict[str, Any]) -> Path:
    """Tensors and JSON in one atomically written safetensors file."""
    return save_state(tensors, path, metadata={"kdkit_resume": json.dumps({"format": FORMAT, **info})})


def load(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(tensors, info) of a resume checkpoint; a damaged file is one line that says what to do."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
        info = json.loads(meta["kdkit_resume"])
    except Exception as err:  # safetensors' own errors, truncation, JSON: all mean a damaged file
        raise RunDirError(f"cannot resume from {path}: the checkpoint is damaged ({type(err).__name__}); delete it "
                          "to redo that stage, or rerun with --overwrite to start over") from None
    if info.get("format") != FORMAT:
        raise RunDirError(f"{path} is a resume checkpoint of format {info.get('format')!r}, this kdkit reads "
                          f"{FORMAT}; rerun with --overwrite to start over")
    return tensors, info


def check_matches(path: Path, info: dict[str, Any], fingerprint: dict[str, Any]) -> None:
    """Refuse to resume with settings or a run that differ from the checkpoint's: the result would be neither run."""
    saved = info.get("fingerprint", {})
    changed = sorted(k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k))
    if changed:
        raise RunDirError(f"cannot resume from {path}: {', '.join(changed)} differ from the interrupted run; "
                          "restore the original config, or rerun with --overwrite to start over")


def scheme_state(scheme: Any) -> dict[str, Tensor]:
    """A scheme's own state beyond student and extras (an EMA teacher, a teacher cache), if it has any."""
    return dict(scheme.resume_state()) if hasattr(scheme, "resume_state") else {}


def load_scheme_state(scheme: Any, tensors: dict[str, Tensor]) -> None:
    if hasattr(scheme, "load_resume_state"):
        scheme.load_resume_state(tensors)


def fingerprint(settings: Any, batches: int, params: list[Tensor]) -> dict[str, Any]:
    """What must not change between the interrupted run and its resumption (device and display may)."""
    skip = {"progress", "device", "checkpoint_every_steps"}
    out = {f"train.{k}": v for k, v in json.loads(settings.model_dump_json()).items() if k not in skip}
    out["batches per epoch"] = batches
    out["trainable parameters"] = sum(p.numel() for p in params)
    return out


def capture(scheme: Any, optimizer: torch.optim.Optimizer, scheduler: Any, augment: torch.Generator,
            loader_state: Tensor | None, best_state: dict[str, Tensor] | None,
            running: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(tensors, JSON) of a fit at this moment; the caller adds its loop counters to the JSON."""
    tensors, rng = rng_state(augment, None)
    if loader_state is not None:
        tensors["rng.loader"] = loader_state  # where the epoch's shuffle starts, see fit
    optim_tensors, optim_info = optimizer_state(optimizer)
    tensors.update(optim_tensors)
    tensors.update(prefixed("student", scheme.student.state_dict()))
    tensors.update(prefixed("extras", scheme.extras.state_dict()))
    tensors.update(prefixed("scheme", scheme_state(scheme)))
    tensors.update(prefixed("best", best_state or {}))
    tensors.update(prefixed("running", running))
    return tensors, {"rng": rng, "optimizer": optim_info, "scheduler": scheduler_state(scheduler)}


# what each process of a torchrun job has of its own: its random streams (dropout, augmentation), its shard's running
# sums of the epoch, and its scheme state (a teacher cache filled from its own shard); the rest is the same everywhere
PER_RANK = ("rng.", "running.", "scheme.")


def gather_ranks(tensors: dict[str, Tensor], info: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
    """Under torchrun, every process's own part of a checkpoint collected on rank 0 (a collective: all processes call
    it at the same point), stored as ``rank<r>.<key>`` and ``info["ranks"][r]``; None on the other ranks, which write
    nothing. A single process gets its checkpoint back unchanged."""
    from kdkit import distributed

    if not distributed.is_distributed():
        return tensors, info
    import torch.distributed as dist

    own = ({k: v.detach().cpu() for k, v in tensors.items() if k.startswith(PER_RANK)}, info["rng"])
    gathered: list[Any] | None = [None] * distributed.world_size() if distributed.is_main() else None
    dist.gather_object(own, gathered, dst=0)
    if gathered is None:
        return None
    shared = {k: v for k, v in tensors.items() if not k.startswith(PER_RANK)}
    for r, (part, _) in enumerate(gathered):
        shared.update(prefixed(f"rank{r}", part))
    rest = {k: v for k, v in info.items() if k != "rng"}
    return shared, {**rest, "ranks": [rng for _, rng in gathered]}


def for_rank(path: Path, tensors: dict[str, Tensor], info: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """This process's view of a checkpoint written by :func:`gather_ranks`: its own ``rank<r>.`` part under the
    plain names, as a single process would have saved it. The number of processes must be the interrupted run's."""
    from kdkit import distributed

    saved = len(info["ranks"]) if "ranks" in info else 1
    if saved != distributed.world_size():
        raise RunDirError(f"cannot resume from {path}: it was written by {saved} process(es), this run has "
                          f"{distributed.world_size()}; resume with the same torchrun --nproc_per_node, or rerun "
                          "with --overwrite to start over")
    if "ranks" not in info:
        return tensors, info
    r = distributed.rank()
    shared = {k: v for k, v in tensors.items() if not re.fullmatch(r"rank\d+", k.split(".", 1)[0])}
    shared.update(unprefixed(f"rank{r}", tensors))
    rest = {k: v for k, v in info.items() if k != "ranks"}
    return shared, {**rest, "rng": info["ranks"][r]}


def restore_models(scheme: Any, tensors: dict[str, Tensor]) -> None:
    """Student, extras and the scheme's own state as checkpointed."""
    scheme.student.load_state_dict(unprefixed("student", tensors))
    scheme.extras.load_state_dict(unprefixed("extras", tensors))
    load_scheme_state(scheme, unprefixed("scheme", tensors))


def rewrite_log(path: Path | None, name: str, history: list[dict[str, Any]]) -> None:
    """metrics.jsonl as of the checkpoint: this stage's lines replaced by its saved history (a line logged after
    the last checkpoint would otherwise appear twice), other stages' lines kept."""
    if path is None or not path.is_file():
        return
    from kdkit.io.checkpoint import write_atomic

    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line torn by the kill
            continue
        if isinstance(record, dict) and record.get("model") != name:
            kept.append(line)
    write_atomic(path, "".join(f"{line}\n" for line in kept + [json.dumps(r) for r in history]))
