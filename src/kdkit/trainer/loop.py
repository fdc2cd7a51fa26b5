"""The one training loop: batches -> scheme (forward + loss terms) -> backward -> step; then validation,
checkpoints (best by a chosen metric, and last), JSONL metrics and a progress bar.

Used alike for training a teacher, a student alone, and a distilled student.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from kdkit import distributed
from kdkit.data.augment import augment_generator, build_augment
from kdkit.errors import ConfigError, DataError, NonFiniteLossError
from kdkit.io.checkpoint import save_state
from kdkit.io.storage import storage_errors
from kdkit.labels import UNLABELLED, MixedTarget
from kdkit.measure import cost, metrics
from kdkit.run.rundir import RunDir
from kdkit.trainer import acceleration
from kdkit.trainer import resume as resume_io
from kdkit.trainer.batches import _split, resolve_device, split_batch
from kdkit.trainer.progress import PlainProgress, is_terminal
from kdkit.trainer.settings import HIGHER_IS_BETTER, TrainSettings
from kdkit.trainer.step import Scheme
from kdkit.trainer.teacher_cache import TeacherCache


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def check_labels(y: Tensor | MixedTarget | None, num_classes: int) -> None:
    if isinstance(y, MixedTarget):  # both labels of a mixed row must be valid classes
        check_labels(y.a, num_classes)
        check_labels(y.b, num_classes)
        return
    if y is None or y.numel() == 0:
        return
    outside = (y < UNLABELLED) | (y >= num_classes)
    if bool(outside.any()):  # one device sync per batch; the details only on the error path
        bad = int(y[outside][0])
        raise DataError(
            f"label {bad} is outside the model's {num_classes} classes [0, {num_classes - 1}] "
            f"(-1 marks an unlabelled row); check the labels or the model's num_classes"
        )


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device: torch.device | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of a whole loader, in loader order, with the model in eval mode."""
    device = device or cost.model_device(model)
    was_training = model.training
    model.eval()
    logits, labels = [], []
    for batch in loader:
        x, y = split_batch(batch, device)
        logits.append(model(x).float().cpu())
        labels.append(y.cpu() if y is not None else torch.full((len(x),), UNLABELLED))
    model.train(was_training)
    return torch.cat(logits).numpy(), torch.cat(labels).numpy()


@torch.no_grad()
def validate(scheme: Scheme, loader: DataLoader, device: torch.device) -> dict[str, float]:
    """Validation metrics of the student, with fidelity to the scheme's teacher where it has one. A scheme whose
    teacher outputs are fixed (`val_teacher`, a kdkit.trainer.teacher_cache.ValidationOutputs) has its teacher run on
    the split once, at the first validation of the first fit that needs it; later ones run the student alone."""
    scheme.train(False)
    memo = getattr(scheme, "val_teacher", None)
    known = memo.get(loader.dataset) if memo is not None else None
    student, teacher, labels, seconds = [], [], [], 0.0
    for batch in loader:
        x, y = split_batch(batch, device)
        if memo is None:
            s, t = scheme.eval_logits(x)
        else:  # the student here, the teacher only while its logits are not known yet
            s, t = scheme.student(x), None
            if known is None:
                start = time.perf_counter()
                t = scheme.eval_teacher_logits(x)
                seconds += time.perf_counter() - start
        student.append(s.float().cpu())
        labels.append(y.cpu())
        if t is not None:
            teacher.append(t.float().cpu())
    t_all = torch.cat(teacher) if teacher else None
    if memo is not None and known is None and t_all is not None:
        memo.put(loader.dataset, t_all, seconds)
    elif known is not None:
        t_all = known
    return metrics.classification_report(torch.cat(student).numpy(), torch.cat(labels).numpy(),
                                         t_all.numpy() if t_all is not None else None)


class JsonlLog:
    """Appends one JSON object per line; flushed at once so a crash keeps what was logged."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        if path is not None:
            with storage_errors(path):
                path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        if self.path is not None:
            with storage_errors(self.path), self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


@dataclass
class FitResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = -1
    best_metrics: dict[str, float] = field(default_factory=dict)
    best_checkpoint: Path | None = None
    stopped_early: bool = False


def _optimizer(params: list[nn.Parameter], s: TrainSettings) -> torch.optim.Optimizer:
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay, nesterov=True)
    cls = torch.optim.AdamW if s.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=s.lr, weight_decay=s.weight_decay)


def _schedule(optimizer: torch.optim.Optimizer, s: TrainSettings, total_steps: int):
    if s.scheduler == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    )


def _progress(enabled: bool, epochs: int = 1, unit: str = "epoch") -> Progress | PlainProgress:
    """rich bars in a terminal; plain periodic lines without one (a log file keeps those, not the bars)."""
    if enabled and not is_terminal():
        return PlainProgress(epochs, unit=unit)
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"), disable=not enabled, transient=False,
    )


class _Step(nn.Module):
    """One training forward (`scheme.losses`) as a module that owns the student and the adapters, so that
    DistributedDataParallel sees exactly the trainable parts and all-reduces their gradients. The scheme is a plain
    attribute (not a Module): the frozen teacher stays out of DDP and each process keeps its own replica."""

    def __init__(self, scheme: Scheme) -> None:
        super().__init__()
        self.student, self.extras = scheme.student, scheme.extras
        self.scheme = scheme

    def forward(self, x: Tensor, y: Tensor | None, epoch: int, index: Tensor | None = None):
        return self.scheme.losses(x, y, epoch, index)


def _all_true(flag: bool, device: torch.device) -> bool:
    """Whether `flag` holds on every process, so that all stop together instead of some waiting forever."""
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def _sync_epoch(step: nn.Module, sums: dict[str, Tensor], counts: list[Tensor]) -> tuple[dict[str, Tensor], list]:
    """End of a distributed epoch: buffers (BatchNorm statistics, updated from each process's own batches) are
    taken from rank 0 so validation and checkpoints see identical models; the logged training sums are added up
    over all processes so the metrics describe the whole epoch, not one shard of it."""
    for buffer in step.buffers():
        dist.broadcast(buffer, src=0)
    keys = sorted(sums)
    packed = torch.stack([sums[k].double() for k in keys] + [c.double() for c in counts])
    dist.all_reduce(packed)
    return dict(zip(keys, packed[: len(keys)], strict=True)), list(packed[len(keys):].round().long())


def fit(
    scheme: Scheme,
    train_loader: DataLoader,
    val_loader: DataLoader | None = None,
    settings: TrainSettings | None = None,
    run_dir: str | Path | None = None,
    name: str = "model",
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    resume: bool | None = None,
    on_teacher_cache: Callable[[Scheme], None] | None = None,
) -> FitResult:
    """Train `scheme.student`; at the end the student holds its best weights (by `settings.monitor` on
    validation data, or the last epoch when there is no validation data or `settings.keep` is 'last').

    `on_epoch(record)` is called after every epoch with the logged record (train and val metrics); an exception it
    raises stops training and propagates (e.g. Optuna's TrialPruned), with the checkpoints written so far kept.

    Launched by torchrun with several processes, the step runs through DistributedDataParallel on
    `distributed.local_device()`; only rank 0 writes checkpoints, metrics and shows progress.

    With a run directory, the full training state is checkpointed (kdkit.trainer.resume) at the end of every epoch and
    every `settings.checkpoint_every_steps` steps; `resume=True` (or a surrounding `kdkit.trainer.resume.resuming()`)
    continues from it and ends with the weights an uninterrupted fit gives, and a finished stage is not redone.

    A scheme that caches its teacher's outputs per sample (`scheme.cache`, kdkit.trainer.teacher_cache) has them
    computed before the first epoch, as a stage of its own with its own progress, so the epochs' times and ETAs are the
    student's; `on_teacher_cache(scheme)` is called once the cache is complete (built or read from disk)."""
    s = settings or TrainSettings()
    if len(train_loader) == 0:
        raise DataError(f"no training batches for '{name}': the training set is empty")
    seed_everything(s.seed)
    is_ddp = distributed.init_from_env()
    main = distributed.is_main()
    device = distributed.local_device() if is_ddp else resolve_device(s.device)
    acceleration.check_precision(s.precision, device)
    scheme.to(device)
    if s.channels_last:  # before the optimizer sees the parameters; only 2-D convolution weights change
        acceleration.to_channels_last(scheme)
    params = [p for p in scheme.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"'{name}' has no trainable parameters (all have requires_grad=False)")
    # replayed views (kdkit.trainer.view_cache) arrive augmented: their dataset renders train.augment itself
    renders_views = getattr(getattr(train_loader, "dataset", None), "renders_views", False)
    augment = None if renders_views else build_augment(s.augment)
    if augment is not None and getattr(scheme, "cache", None) is not None:
        # a cached teacher output belongs to the view of its first epoch, not to the student's view now
        raise ConfigError("teacher outputs cannot be cached while train.augment changes the inputs every epoch; "
                          "build the scheme without cache_size (distill.cache_teacher: false)")
    # one stream per fit: the same seed gives the same views, whichever scheme and models see them
    generator = augment_generator(s.seed, distributed.rank())
    optimizer = _optimizer(params, s)
    accumulate = s.grad_accumulation
    updates_per_epoch = math.ceil(len(train_loader) / accumulate)  # optimizer (and schedule) steps
    scheduler = _schedule(optimizer, s, s.epochs * updates_per_epoch)
    scaler = acceleration.grad_scaler(s.precision, device)
    step_module, losses = None, scheme.losses
    if is_ddp:
        step_module = _Step(scheme)
        # a term switched off by until_epoch leaves its adapter without gradients; DDP must then expect unused ones
        stops = any(getattr(t, "until_epoch", None) is not None for t in getattr(scheme, "terms", []))
        losses = DistributedDataParallel(step_module, device_ids=[device.index] if device.type == "cuda" else None,
                                         find_unused_parameters=stops)
    sampler = getattr(train_loader, "sampler", None)
    run = RunDir(run_dir) if run_dir is not None else None
    writes = run is not None and main
    log = JsonlLog(run.metrics if writes else None)
    higher = HIGHER_IS_BETTER[s.monitor]
    result, best_value, best_state, since_best = FitResult(), None, None, 0
    last_good = "none yet (failed in the first epoch)"
    num_classes = None
    loader_rng = getattr(train_loader, "generator", None)
    every = s.checkpoint_every_steps
    first_epoch, first_step, pending = 0, 0, None
    marks = resume_io.fingerprint(s, len(train_loader), params)
    state_file = run.checkpoint(name, "resume") if run is not None else None
    if state_file is not None and resume_io.resume_requested(resume) and state_file.is_file():
        pending, info = resume_io.for_rank(state_file, *resume_io.load(state_file))  # each process its own part
        resume_io.check_matches(state_file, info, marks)
        resume_io.restore_models(scheme, pending)
        scheme.to(device)
        result = FitResult(info["history"], info["best_epoch"], info["best_metrics"],
                           Path(info["best_checkpoint"]) if info["best_checkpoint"] else None, info["stopped_early"])
        resume_io.rewrite_log(log.path, name, result.history)
        if info["finished"]:  # the stage ended before the interruption: its final weights are loaded, not redone
            # and the random streams left as training left them: what comes next (e.g. a scheme's new adapters)
            # draws what it drew in the uninterrupted run
            resume_io.set_rng_state(pending, info["rng"], generator, loader_rng)
            scheme.train(False)
            return result
        resume_io.load_optimizer_state(optimizer, pending, info["optimizer"])
        resume_io.load_scheduler_state(scheduler, info["scheduler"])
        best_value, since_best, last_good, num_classes = (info["best_value"], info["since_best"],
                                                          info["last_good"], info["num_classes"])
        best_state = resume_io.unprefixed("best", pending) or None
        first_epoch, first_step = info["epoch"], info["step"]
        if loader_rng is not None and "rng.loader" in pending:
            loader_rng.set_state(pending["rng.loader"])
        pending = (pending, info["rng"])
    elif state_file is not None and resume_io.resume_requested(resume):
        # no checkpoint of this stage yet, but a kill between an epoch's log line and its checkpoint leaves the line
        resume_io.rewrite_log(log.path, name, [])

    def checkpoint(epochs_done: int, steps_done: int, loader_state: Tensor | None,
                   running: dict[str, Tensor], finished: bool = False) -> None:
        """The resumable state now: after `epochs_done` epochs and `steps_done` steps of the next one."""
        if state_file is None:
            return
        tensors, info = resume_io.capture(scheme, optimizer, scheduler, generator, loader_state,
                                          best_state, running)
        info.update(epoch=epochs_done, step=steps_done, finished=finished, fingerprint=marks,
                    best_value=best_value, since_best=since_best, last_good=last_good, num_classes=num_classes,
                    history=result.history, best_epoch=result.best_epoch, best_metrics=result.best_metrics,
                    best_checkpoint=str(result.best_checkpoint) if result.best_checkpoint else None,
                    stopped_early=result.stopped_early)
        gathered = resume_io.gather_ranks(tensors, info)  # under torchrun every process calls this, rank 0 writes
        if gathered is not None:
            resume_io.save(state_file, *gathered)

    if first_epoch < s.epochs and not is_ddp:  # under torchrun each process fills its shard's samples as it trains
        fill_teacher_cache(scheme, train_loader, s, device, f"{name}: teacher cache", s.progress and main)
    if on_teacher_cache is not None and isinstance(getattr(scheme, "cache", None), TeacherCache):
        on_teacher_cache(scheme)
    with _progress(s.progress and main, s.epochs) as bar, _compiled(scheme.student, s.compile):
        task = bar.add_task(f"{name}", total=s.epochs * len(train_loader), status="")
        bar.update(task, completed=first_epoch * len(train_loader) + first_step)
        for epoch in range(first_epoch, s.epochs):
            if s.patience is not None and since_best >= s.patience:  # resumed after the epoch that stopped it
                result.stopped_early = True
                break
            if isinstance(sampler, DistributedSampler):
                sampler.set_epoch(epoch)  # a new shuffle each epoch, the same on every process
            if renders_views:
                train_loader.dataset.set_epoch(epoch)  # each sample's stored view for this epoch
            scheme.train()
            # running sums stay on the device: one sync per epoch instead of several per step
            sums: dict[str, Tensor] = {}
            correct = seen = count = torch.zeros((), dtype=torch.long, device=device)
            # the loader's generator before this epoch's shuffle: a mid-epoch checkpoint replays the shuffle from it
            epoch_rng = loader_rng.get_state() if loader_rng is not None else None
            batches, start = iter(train_loader), 0
            if pending is not None:  # resuming: skip the steps already done, then restore the random streams
                start = first_step
                for _ in range(start):
                    next(batches)
                resume_io.set_rng_state(*pending, generator, None)
                running = {k: v.to(device) for k, v in resume_io.unprefixed("running", pending[0]).items()}
                if start:
                    correct, seen, count = running.pop("@correct"), running.pop("@seen"), running.pop("@count")
                    sums = running
                pending = None
            for step, batch in enumerate(batches, start=start):
                x, y, index = _split(batch, device)
                if num_classes is None:  # one tiny forward, so bad labels fail here and not deep inside a loss
                    scheme.train(False)  # eval mode: the probe must not touch BatchNorm statistics
                    with torch.no_grad():  # the student alone: a teacher's forward would be wasted here
                        num_classes = scheme.student(x[:1]).shape[-1]
                    scheme.train()
                check_labels(y, num_classes)
                if augment is not None:  # one view per sample, which the scheme gives to teacher and student alike
                    x, y = augment(x, y, generator)
                if s.channels_last:
                    x = acceleration.channels_last_input(x)
                # grad_accumulation: steps group_start .. group_start + group - 1 make one optimizer step; the last
                # group of an epoch may be shorter, and each loss is divided by its own group's size
                group_start = step - step % accumulate
                group = min(accumulate, len(train_loader) - group_start)
                last_in_group = step + 1 == group_start + group
                # under DDP the gradients are all-reduced once, at the group's last backward
                sync = losses.no_sync() if step_module is not None and not last_in_group else nullcontext()
                with sync:
                    with acceleration.autocast(s.precision, device):
                        weighted, raw, logits = losses(x, y, epoch, index)
                    loss = sum(weighted.values())
                    finite = bool(torch.isfinite(loss))
                    if not (_all_true(finite, device) if is_ddp else finite):
                        seen_here = loss.item() if not finite else "non-finite on another process"
                        raise NonFiniteLossError(  # on every process: one that went on would wait forever
                            f"'{name}' loss became {seen_here} at epoch {epoch + 1}, step {step + 1}; training "
                            f"stopped, last good checkpoint: {last_good}; lower lr or set grad_clip"
                        )
                    if step == group_start:
                        optimizer.zero_grad(set_to_none=True)
                    part = loss / group if group > 1 else loss
                    (scaler.scale(part) if scaler is not None else part).backward()
                if last_in_group:
                    if scaler is not None and s.grad_clip:
                        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
                    if s.grad_clip:
                        nn.utils.clip_grad_norm_(params, s.grad_clip)
                    if scaler is not None:
                        scaler.step(optimizer)  # skipped when the scaled gradients overflowed
                        scaler.update()
                    else:
                        optimizer.step()
                    scheduler.step()
                for key, value in {"loss": loss.detach(), **raw}.items():
                    sums[key] = sums.get(key, 0.0) + value.float() * len(x)
                if y is not None:
                    if isinstance(y, MixedTarget):  # a mixed row counts against the label with the larger share
                        y = y.major
                    labelled = y != UNLABELLED
                    correct = correct + ((logits.detach().argmax(-1) == y) & labelled).sum()
                    seen = seen + labelled.sum()
                count = count + len(x)
                bar.update(task, advance=1, loss=loss.detach())  # read only when a plain line prints
                # mid-epoch checkpoints only between optimizer steps (no half-accumulated gradients to lose)
                if every and last_in_group and (step + 1) // every > group_start // every \
                        and step + 1 < len(train_loader):
                    checkpoint(epoch, step + 1, epoch_rng,
                               {**sums, "@correct": correct, "@seen": seen, "@count": count})
            n = len(train_loader.dataset) if hasattr(train_loader, "dataset") else 1
            if step_module is not None:
                sums, (correct, seen, count) = _sync_epoch(step_module, sums, [correct, seen, count])
                n = count.item()  # DistributedSampler pads the shards to equal length
            record: dict[str, Any] = {"model": name, "epoch": epoch + 1, "lr": scheduler.get_last_lr()[0]}
            record.update({f"train_{k}": v.item() / n for k, v in sums.items()})
            record["train_accuracy"] = correct.item() / seen.item() if seen.item() else None
            if val_loader is not None:
                record.update({f"val_{k}": v for k, v in validate(scheme, val_loader, device).items()})
            # without validation data the last epoch is the best one; the monitor only matters with it
            monitor_key = "train_loss" if val_loader is None or s.monitor == "loss" else f"val_{s.monitor}"
            value = record.get(monitor_key)
            if is_ddp:  # rank 0's value decides for all, so best epoch and early stop never diverge
                shared = [value]
                dist.broadcast_object_list(shared, src=0)
                value = shared[0]
            if value is None:
                raise ConfigError(
                    f"monitor '{s.monitor}' needs a teacher, but '{name}' is trained without one; "
                    "choose e.g. monitor: macro_f1"
                )
            improved = best_value is None or (value > best_value if higher else value < best_value)
            if improved or val_loader is None:
                best_value, since_best, result.best_epoch = value, 0, epoch + 1
                best_state = {k: v.detach().cpu().clone() for k, v in scheme.student.state_dict().items()}
                result.best_metrics = {k[4:]: v for k, v in record.items() if k.startswith("val_")}
                if writes:
                    result.best_checkpoint = save_state(best_state, run.checkpoint(name, "best"))
            else:
                since_best += 1
            if writes:
                save_state(scheme.student.state_dict(), run.checkpoint(name, "last"))
                if len(scheme.extras.state_dict()):
                    save_state(scheme.extras.state_dict(), run.checkpoint(name, "extras"))
                last_good = str(run.checkpoint(name, "last")) + f" (epoch {epoch + 1})"
            else:
                last_good = f"in memory (epoch {epoch + 1})"
            record["best_epoch"] = result.best_epoch
            log.write(record)
            result.history.append(record)
            checkpoint(epoch + 1, 0, loader_rng.get_state() if loader_rng is not None else None, {})
            bar.update(task, status=_status(record))
            if on_epoch is not None:
                on_epoch(record)
            if s.patience is not None and since_best >= s.patience:
                result.stopped_early = True
                break
    optimizer.zero_grad(set_to_none=True)  # frees gradient memory; a trained model is handed back clean
    scheme.train(False)
    if best_state is not None and s.keep == "best":
        scheme.student.load_state_dict(best_state)
    checkpoint(s.epochs, 0, loader_rng.get_state() if loader_rng is not None else None, {}, finished=True)
    return result


@torch.no_grad()
def fill_teacher_cache(scheme: Scheme, train_loader: DataLoader, s: TrainSettings, device: torch.device,
                       name: str, progress: bool) -> None:
    """The teacher's outputs on every training sample not yet in `scheme.cache`, in order and in the training's
    batch size, computed as a training step computes them (same device, precision and memory format)."""
    cache = getattr(scheme, "cache", None)
    if not isinstance(cache, TeacherCache) or bool(cache.filled.all()) or not hasattr(scheme, "teacher_outputs"):
        return
    from kdkit.data.loaders import make_loader

    batch_size = getattr(train_loader.sampler, "batch_size", None) or train_loader.batch_size or 1
    ordered = make_loader(train_loader.dataset, batch_size, shuffle=False)
    with _progress(progress, 1, unit="pass") as bar:
        task = bar.add_task(name, total=len(ordered), status="")
        for batch in ordered:
            x, _, index = _split(batch, device)
            if index is not None and not bool(cache.filled[index.cpu()].all()):
                if s.channels_last:
                    x = acceleration.channels_last_input(x)
                with acceleration.autocast(s.precision, device):
                    scheme.teacher_outputs(x, index)
            bar.update(task, advance=1)


@contextmanager
def _compiled(student: nn.Module, enabled: bool) -> Iterator[None]:
    """The student compiled while it trains and handed back eager, also when training stops with an error."""
    if not enabled:
        yield
        return
    acceleration.compile_student(student)
    try:
        yield
    finally:
        acceleration.uncompile(student)


def _status(record: dict[str, Any]) -> str:
    parts = [f"loss {record['train_loss']:.3f}"]
    for key, label in (("val_accuracy", "acc"), ("val_macro_f1", "F1"), ("val_agreement", "agree")):
        if key in record:
            parts.append(f"{label} {record[key]:.3f}")
    return " ".join(parts)
