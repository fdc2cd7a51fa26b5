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
from kdkit.trainer.early_stopping import EarlyStopping
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


@dataclass
class _EpochTotals:
    """An epoch's running sums, kept on the device: one sync per epoch instead of several per step."""

    sums: dict[str, Tensor]
    correct: Tensor
    seen: Tensor
    count: Tensor

    @classmethod
    def zeros(cls, device: torch.device) -> _EpochTotals:
        zero = torch.zeros((), dtype=torch.long, device=device)
        return cls({}, zero, zero, zero)

    def add(self, loss: Tensor, raw: dict[str, Tensor], logits: Tensor, x: Any, y: Any) -> None:
        for key, value in {"loss": loss.detach(), **raw}.items():
            self.sums[key] = self.sums.get(key, 0.0) + value.float() * len(x)
        if y is not None:
            if isinstance(y, MixedTarget):  # a mixed row counts against the label with the larger share
                y = y.major
            labelled = y != UNLABELLED
            self.correct = self.correct + ((logits.detach().argmax(-1) == y) & labelled).sum()
            self.seen = self.seen + labelled.sum()
        self.count = self.count + len(x)

    def running(self) -> dict[str, Tensor]:
        """The sums as a mid-epoch checkpoint keeps them."""
        return {**self.sums, "@correct": self.correct, "@seen": self.seen, "@count": self.count}


@dataclass
class _Fit:
    """What one fit holds between its parts: the models and their optimizer, the random streams, the run directory
    and its log, the best epoch so far (early stopping) and where a resumed fit starts."""

    scheme: Scheme
    s: TrainSettings
    name: str
    device: torch.device
    is_ddp: bool
    main: bool
    params: list[nn.Parameter]
    augment: Any
    renders_views: bool
    generator: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    step_module: _Step | None
    losses: Any
    run: RunDir | None
    log: JsonlLog
    stop: EarlyStopping
    loader_rng: Any
    marks: Any
    batches: int
    result: FitResult = field(default_factory=FitResult)
    best_state: dict[str, Tensor] | None = None
    last_good: str = "none yet (failed in the first epoch)"
    num_classes: int | None = None
    first_epoch: int = 0
    first_step: int = 0
    pending: Any = None  # a resumed fit's saved tensors and random streams, until its first epoch restores them

    @property
    def writes(self) -> bool:
        """Only rank 0 writes checkpoints and metrics."""
        return self.run is not None and self.main

    @property
    def state_file(self) -> Path | None:
        return self.run.checkpoint(self.name, "resume") if self.run is not None else None

    def loader_state(self) -> Tensor | None:
        return self.loader_rng.get_state() if self.loader_rng is not None else None


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
    f = _setup(scheme, train_loader, s, name, run_dir)
    if _resume(f, resume):
        return f.result
    if f.first_epoch < s.epochs and not f.is_ddp:  # under torchrun each process fills its shard's samples as it trains
        fill_teacher_cache(scheme, train_loader, s, f.device, f"{name}: teacher cache", s.progress and f.main)
    if on_teacher_cache is not None and isinstance(getattr(scheme, "cache", None), TeacherCache):
        on_teacher_cache(scheme)
    with _progress(s.progress and f.main, s.epochs) as bar, _compiled(scheme.student, s.compile):
        task = bar.add_task(f"{name}", total=s.epochs * len(train_loader), status="")
        bar.update(task, completed=f.first_epoch * len(train_loader) + f.first_step)
        for epoch in range(f.first_epoch, s.epochs):
            if f.stop.should_stop:  # resumed after the epoch that stopped it
                f.result.stopped_early = True
                break
            record = _epoch(f, train_loader, val_loader, epoch, lambda **kw: bar.update(task, **kw))
            if on_epoch is not None:
                on_epoch(record)
            if f.stop.should_stop:
                f.result.stopped_early = True
                break
    _finish(f)
    return f.result


def _setup(scheme: Scheme, train_loader: DataLoader, s: TrainSettings, name: str, run_dir: str | Path | None) -> _Fit:
    """The device, the trainable parameters, augmentation, optimizer and schedule, the DDP wrapper and the log."""
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
    updates_per_epoch = math.ceil(len(train_loader) / s.grad_accumulation)  # optimizer (and schedule) steps
    scheduler = _schedule(optimizer, s, s.epochs * updates_per_epoch)
    scaler = acceleration.grad_scaler(s.precision, device)
    step_module, losses = _ddp_step(scheme, device) if is_ddp else (None, scheme.losses)
    run = RunDir(run_dir) if run_dir is not None else None
    log = JsonlLog(run.metrics if run is not None and main else None)
    stop = EarlyStopping(HIGHER_IS_BETTER[s.monitor], s.patience)
    return _Fit(scheme, s, name, device, is_ddp, main, params, augment, renders_views, generator, optimizer,
                scheduler, scaler, step_module, losses, run, log, stop,
                getattr(train_loader, "generator", None), resume_io.fingerprint(s, len(train_loader), params),
                len(train_loader))


def _ddp_step(scheme: Scheme, device: torch.device) -> tuple[_Step, DistributedDataParallel]:
    step_module = _Step(scheme)
    # a term switched off by until_epoch leaves its adapter without gradients; DDP must then expect unused ones
    stops = any(getattr(t, "until_epoch", None) is not None for t in getattr(scheme, "terms", []))
    return step_module, DistributedDataParallel(step_module, device_ids=[device.index] if device.type == "cuda"
                                                else None, find_unused_parameters=stops)


def _resume(f: _Fit, resume: bool | None) -> bool:
    """Continue from the stage's resumable state when asked and one exists; True when the stage had finished (its
    final weights are loaded, nothing is redone)."""
    state_file = f.state_file
    if state_file is None or not resume_io.resume_requested(resume):
        return False
    if not state_file.is_file():
        # no checkpoint of this stage yet, but a kill between an epoch's log line and its checkpoint leaves the line
        resume_io.rewrite_log(f.log.path, f.name, [])
        return False
    pending, info = resume_io.for_rank(state_file, *resume_io.load(state_file))  # each process its own part
    resume_io.check_matches(state_file, info, f.marks)
    resume_io.restore_models(f.scheme, pending)
    f.scheme.to(f.device)
    f.result = FitResult(info["history"], info["best_epoch"], info["best_metrics"],
                         Path(info["best_checkpoint"]) if info["best_checkpoint"] else None, info["stopped_early"])
    resume_io.rewrite_log(f.log.path, f.name, f.result.history)
    if info["finished"]:
        # the random streams left as training left them: what comes next (e.g. a scheme's new adapters) draws what
        # it drew in the uninterrupted run
        resume_io.set_rng_state(pending, info["rng"], f.generator, f.loader_rng)
        f.scheme.train(False)
        return True
    resume_io.load_optimizer_state(f.optimizer, pending, info["optimizer"])
    resume_io.load_scheduler_state(f.scheduler, info["scheduler"])
    f.stop.best_value, f.stop.since_best = info["best_value"], info["since_best"]
    f.last_good, f.num_classes = info["last_good"], info["num_classes"]
    f.best_state = resume_io.unprefixed("best", pending) or None
    f.first_epoch, f.first_step = info["epoch"], info["step"]
    if f.loader_rng is not None and "rng.loader" in pending:
        f.loader_rng.set_state(pending["rng.loader"])
    f.pending = (pending, info["rng"])
    return False


def _save_resumable(f: _Fit, epochs_done: int, steps_done: int, loader_state: Tensor | None,
                    running: dict[str, Tensor], finished: bool = False) -> None:
    """The resumable state now: after `epochs_done` epochs and `steps_done` steps of the next one."""
    if f.state_file is None:
        return
    tensors, info = resume_io.capture(f.scheme, f.optimizer, f.scheduler, f.generator, loader_state, f.best_state,
                                      running)
    r = f.result
    info.update(epoch=epochs_done, step=steps_done, finished=finished, fingerprint=f.marks,
                best_value=f.stop.best_value, since_best=f.stop.since_best, last_good=f.last_good,
                num_classes=f.num_classes, history=r.history, best_epoch=r.best_epoch, best_metrics=r.best_metrics,
                best_checkpoint=str(r.best_checkpoint) if r.best_checkpoint else None, stopped_early=r.stopped_early)
    gathered = resume_io.gather_ranks(tensors, info)  # under torchrun every process calls this, rank 0 writes
    if gathered is not None:
        resume_io.save(f.state_file, *gathered)


def _epoch(f: _Fit, train_loader: DataLoader, val_loader: DataLoader | None, epoch: int,
           progress: Callable[..., None]) -> dict[str, Any]:
    """One epoch: trained, measured, kept (best and last checkpoints), logged and checkpointed; its record."""
    sampler = getattr(train_loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)  # a new shuffle each epoch, the same on every process
    if f.renders_views:
        train_loader.dataset.set_epoch(epoch)  # each sample's stored view for this epoch
    f.scheme.train()
    totals = _train_epoch(f, train_loader, epoch, progress)
    record = _epoch_record(f, totals, train_loader, val_loader, epoch)
    _keep(f, record, val_loader is None, epoch)
    f.log.write(record)
    f.result.history.append(record)
    _save_resumable(f, epoch + 1, 0, f.loader_state(), {})
    progress(status=_status(record))
    return record


def _train_epoch(f: _Fit, train_loader: DataLoader, epoch: int, progress: Callable[..., None]) -> _EpochTotals:
    # the loader's generator before this epoch's shuffle: a mid-epoch checkpoint replays the shuffle from it
    epoch_rng = f.loader_state()
    batches = iter(train_loader)
    start, totals = _replay(f, batches) if f.pending is not None else (0, _EpochTotals.zeros(f.device))
    every = f.s.checkpoint_every_steps
    for step, batch in enumerate(batches, start=start):
        loss, raw, logits, x, y = _train_step(f, batch, step, epoch)
        totals.add(loss, raw, logits, x, y)
        progress(advance=1, loss=loss.detach())  # read only when a plain line prints
        group_start, last_in_group = _group(f, step)
        # mid-epoch checkpoints only between optimizer steps (no half-accumulated gradients to lose)
        if every and last_in_group and (step + 1) // every > group_start // every and step + 1 < f.batches:
            _save_resumable(f, epoch, step + 1, epoch_rng, totals.running())
    return totals


def _replay(f: _Fit, batches: Iterator[Any]) -> tuple[int, _EpochTotals]:
    """Resuming: skip the steps already done, then restore the random streams and the epoch's running sums."""
    start = f.first_step
    for _ in range(start):
        next(batches)
    resume_io.set_rng_state(*f.pending, f.generator, None)
    running = {k: v.to(f.device) for k, v in resume_io.unprefixed("running", f.pending[0]).items()}
    totals = _EpochTotals.zeros(f.device)
    if start:
        correct, seen, count = running.pop("@correct"), running.pop("@seen"), running.pop("@count")
        totals = _EpochTotals(running, correct, seen, count)
    f.pending = None
    return start, totals


def _group(f: _Fit, step: int) -> tuple[int, bool]:
    """grad_accumulation: steps group_start .. group_start + group - 1 make one optimizer step (the last group of an
    epoch may be shorter); the group's first step and whether `step` is its last."""
    accumulate = f.s.grad_accumulation
    group_start = step - step % accumulate
    return group_start, step + 1 == group_start + min(accumulate, f.batches - group_start)


def _train_step(f: _Fit, batch: Any, step: int, epoch: int) -> tuple[Tensor, dict[str, Tensor], Tensor, Any, Any]:
    """One batch checked, augmented, forward and backward, and the optimizer step that ends its group; the loss,
    raw terms and logits, and the inputs and labels as trained on."""
    x, y, index = _split(batch, f.device)
    if f.num_classes is None:  # one tiny forward, so bad labels fail here and not deep inside a loss
        f.scheme.train(False)  # eval mode: the probe must not touch BatchNorm statistics
        with torch.no_grad():  # the student alone: a teacher's forward would be wasted here
            f.num_classes = f.scheme.student(x[:1]).shape[-1]
        f.scheme.train()
    check_labels(y, f.num_classes)
    if f.augment is not None:  # one view per sample, which the scheme gives to teacher and student alike
        x, y = f.augment(x, y, f.generator)
    if f.s.channels_last:
        x = acceleration.channels_last_input(x)
    group_start, last_in_group = _group(f, step)
    group = min(f.s.grad_accumulation, f.batches - group_start)  # each loss is divided by its own group's size
    # under DDP the gradients are all-reduced once, at the group's last backward
    sync = f.losses.no_sync() if f.step_module is not None and not last_in_group else nullcontext()
    with sync:
        with acceleration.autocast(f.s.precision, f.device):
            weighted, raw, logits = f.losses(x, y, epoch, index)
        loss = sum(weighted.values())
        _check_finite(f, loss, epoch, step)
        if step == group_start:
            f.optimizer.zero_grad(set_to_none=True)
        part = loss / group if group > 1 else loss
        (f.scaler.scale(part) if f.scaler is not None else part).backward()
    if last_in_group:
        _optimizer_step(f)
    return loss, raw, logits, x, y


def _check_finite(f: _Fit, loss: Tensor, epoch: int, step: int) -> None:
    finite = bool(torch.isfinite(loss))
    if not (_all_true(finite, f.device) if f.is_ddp else finite):
        seen_here = loss.item() if not finite else "non-finite on another process"
        raise NonFiniteLossError(  # on every process: one that went on would wait forever
            f"'{f.name}' loss became {seen_here} at epoch {epoch + 1}, step {step + 1}; training "
            f"stopped, last good checkpoint: {f.last_good}; lower lr or set grad_clip"
        )


def _optimizer_step(f: _Fit) -> None:
    if f.scaler is not None and f.s.grad_clip:
        f.scaler.unscale_(f.optimizer)  # clip the true gradients, not the scaled ones
    if f.s.grad_clip:
        nn.utils.clip_grad_norm_(f.params, f.s.grad_clip)
    if f.scaler is not None:
        f.scaler.step(f.optimizer)  # skipped when the scaled gradients overflowed
        f.scaler.update()
    else:
        f.optimizer.step()
    f.scheduler.step()


def _epoch_record(f: _Fit, totals: _EpochTotals, train_loader: DataLoader, val_loader: DataLoader | None,
                  epoch: int) -> dict[str, Any]:
    """The epoch's logged record: learning rate, training means (over all processes) and validation metrics."""
    n = len(train_loader.dataset) if hasattr(train_loader, "dataset") else 1
    sums, correct, seen = totals.sums, totals.correct, totals.seen
    if f.step_module is not None:
        sums, (correct, seen, count) = _sync_epoch(f.step_module, sums, [correct, seen, totals.count])
        n = count.item()  # DistributedSampler pads the shards to equal length
    record: dict[str, Any] = {"model": f.name, "epoch": epoch + 1, "lr": f.scheduler.get_last_lr()[0]}
    record.update({f"train_{k}": v.item() / n for k, v in sums.items()})
    record["train_accuracy"] = correct.item() / seen.item() if seen.item() else None
    if val_loader is not None:
        record.update({f"val_{k}": v for k, v in validate(f.scheme, val_loader, f.device).items()})
    return record


def _keep(f: _Fit, record: dict[str, Any], no_val: bool, epoch: int) -> None:
    """The epoch against the best so far (early stopping's count), the best and last checkpoints."""
    # without validation data the last epoch is the best one; the monitor only matters with it
    monitor_key = "train_loss" if no_val or f.s.monitor == "loss" else f"val_{f.s.monitor}"
    value = record.get(monitor_key)
    if f.is_ddp:  # rank 0's value decides for all, so best epoch and early stop never diverge
        shared = [value]
        dist.broadcast_object_list(shared, src=0)
        value = shared[0]
    if value is None:
        raise ConfigError(f"monitor '{f.s.monitor}' needs a teacher, but '{f.name}' is trained without one; "
                          "choose e.g. monitor: macro_f1")
    if f.stop.observe(value, always=no_val):
        f.result.best_epoch = epoch + 1
        f.best_state = {k: v.detach().cpu().clone() for k, v in f.scheme.student.state_dict().items()}
        f.result.best_metrics = {k[4:]: v for k, v in record.items() if k.startswith("val_")}
        if f.writes:
            f.result.best_checkpoint = save_state(f.best_state, f.run.checkpoint(f.name, "best"))
    if f.writes:
        save_state(f.scheme.student.state_dict(), f.run.checkpoint(f.name, "last"))
        if len(f.scheme.extras.state_dict()):
            save_state(f.scheme.extras.state_dict(), f.run.checkpoint(f.name, "extras"))
        f.last_good = str(f.run.checkpoint(f.name, "last")) + f" (epoch {epoch + 1})"
    else:
        f.last_good = f"in memory (epoch {epoch + 1})"
    record["best_epoch"] = f.result.best_epoch


def _finish(f: _Fit) -> None:
    """The student handed back clean (gradients freed, eval mode) with its kept weights; the stage marked finished."""
    f.optimizer.zero_grad(set_to_none=True)
    f.scheme.train(False)
    if f.best_state is not None and f.s.keep == "best":
        f.scheme.student.load_state_dict(f.best_state)
    _save_resumable(f, f.s.epochs, 0, f.loader_state(), {}, finished=True)


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
