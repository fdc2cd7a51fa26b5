"""A LossTerm binds one loss to the tensors it compares, so losses never deal with hooks or module paths.

    term value = weight * ramp(epoch) * on(epoch) * loss(adapter(student[student_key]), teacher[teacher_key], target)

where ramp(epoch) = min(1, (epoch + 1) / warmup_epochs) linearly warms a term up (as DKD does),
on(epoch) = 1 if epoch < until_epoch else 0 switches it off for good (epochs count from 0, so ``until_epoch: 10``
acts in the first 10 epochs; no until_epoch: always on) and the adapter (optional, trainable, saved apart from the
student) maps student features to the teacher's shape.

until_epoch gives early-stopped KD (ESKD; Cho & Hariharan, ICCV 2019, "On the Efficacy of Knowledge
Distillation"): ``[{name: kd, T: 4, until_epoch: 10}, {name: ce}]`` distils for 10 epochs, then trains on the
labels alone. A switched-off term is not computed at all (see :func:`active_terms`). A key may be a
list of paths (e.g. FSP's two layers): the loss then receives a tuple of tensors, in the listed order. A loss whose
``reads_epoch`` is true (kd with ``curriculum_T``) is told the epoch, ``loss.set_epoch(epoch)``, before each call;
its parameters, like an adapter's, train with the student.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import Tensor, nn

from kdkit.config.paths import term_labels
from kdkit.config.validation import format_validation_error
from kdkit.errors import ConfigError, ModelError
from kdkit.losses.registry import LossOptions, loss_options
from kdkit.taps import INPUT_SUFFIX, LOGITS, resolve_module

Key = str | tuple[str, ...]


def _as_key(value: str | Sequence[str]) -> Key:
    """A path, or a list of paths turned into a tuple (hashable, fixed order)."""
    if isinstance(value, str):
        return value
    paths = tuple(value) if isinstance(value, (list, tuple)) else ()
    if not paths or not all(isinstance(p, str) for p in paths):
        raise ConfigError(f"a term's student/teacher must be a module path or a list of paths, got {value!r}")
    return paths


def pick_outputs(outputs: Mapping[str, Tensor], key: Key) -> Tensor | tuple[Tensor, ...]:
    """The tensor a key names, or the tuple of tensors for a list of paths."""
    return outputs[key] if isinstance(key, str) else tuple(outputs[k] for k in key)


def key_paths(key: Key) -> tuple[str, ...]:
    """The module paths a key reads."""
    return (key,) if isinstance(key, str) else key


class LossTerm(nn.Module):
    def __init__(
        self,
        loss: nn.Module,
        weight: float = 1.0,
        student: str | Sequence[str] = LOGITS,
        teacher: str | Sequence[str] = LOGITS,
        name: str | None = None,
        adapter: nn.Module | None = None,
        warmup_epochs: int = 0,
        until_epoch: int | None = None,
    ) -> None:
        super().__init__()
        self.loss, self.weight, self.warmup_epochs = loss, float(weight), int(warmup_epochs)
        self.student_key, self.teacher_key = _as_key(student), _as_key(teacher)
        self.name = name or type(loss).__name__.lower()
        # bool is an int in Python; `until_epoch: true` is a mistake, not epoch 1
        if until_epoch is not None and (isinstance(until_epoch, bool) or not isinstance(until_epoch, int)
                                        or until_epoch < 1):
            raise ConfigError(f"loss term '{self.name}': until_epoch must be a whole number >= 1 (the term acts in "
                              f"epochs 0 .. until_epoch - 1), got {until_epoch!r}")
        self.until_epoch = until_epoch
        self.adapter = adapter
        self.uses_teacher = getattr(loss, "uses_teacher", True)
        self.reads_epoch = getattr(loss, "reads_epoch", False)  # e.g. kd's curriculum_T: its schedule follows epochs

    def ramp(self, epoch: int) -> float:
        return 1.0 if self.warmup_epochs <= 0 else min(1.0, (epoch + 1) / self.warmup_epochs)

    def active(self, epoch: int) -> bool:
        """on(epoch): False from epoch `until_epoch` on (epochs counted from 0)."""
        return self.until_epoch is None or epoch < self.until_epoch

    def factor(self, epoch: int) -> float:
        """The schedule ramp(epoch) * on(epoch) that multiplies the weight at `epoch`."""
        return self.ramp(epoch) if self.active(epoch) else 0.0

    def forward(
        self,
        student_out: Mapping[str, Tensor],
        teacher_out: Mapping[str, Tensor] | None,
        target: Tensor | None,
        epoch: int = 0,
    ) -> tuple[Tensor, Tensor]:
        """Returns (weighted value that enters the total, raw loss value for logging)."""
        s = pick_outputs(student_out, self.student_key)
        if self.student_key == LOGITS and s.dim() > 2 and not getattr(self.loss, "per_token", False):
            raise ModelError(
                f"loss term '{self.name}' compares one prediction per sample (N, C), but the logits are "
                f"{tuple(s.shape)}, one per token; use token_kd (and ce) for sequence labelling"
            )
        if self.adapter is not None:
            s = self.adapter(s)
        t = None
        if self.uses_teacher:
            if teacher_out is None:
                raise ModelError(f"loss term '{self.name}' needs a teacher but this scheme has none")
            t = pick_outputs(teacher_out, self.teacher_key)
            if self.student_key == LOGITS and self.teacher_key == LOGITS and s.shape[-1] != t.shape[-1]:
                raise ModelError(
                    f"teacher predicts {t.shape[-1]} classes but the student {s.shape[-1]}; "
                    "give both models the same number of outputs (num_classes)"
                )
        if self.reads_epoch:
            self.loss.set_epoch(epoch)
        raw = self.loss(s, t, target)
        scale = self.weight * self.factor(epoch)
        return (raw if scale == 1.0 else scale * raw), raw.detach()


TERM_KEYS = {"name", "weight", "student", "teacher", "warmup_epochs", "until_epoch"}


def active_terms(terms: Sequence[LossTerm], epoch: int) -> list[LossTerm]:
    """The terms still on at `epoch`; schemes compute only these (a stopped term adds nothing and is not logged)."""
    active = [t for t in terms if t.active(epoch)]
    if not active:  # build_terms refuses this up front; terms built by hand reach it here
        raise ConfigError(f"every loss term has stopped by epoch {epoch} (until_epoch), so nothing would train; "
                          "add a term without until_epoch, e.g. {name: ce}")
    return active


class TermOptions(BaseModel):
    """The keys of a term that belong to the term, not to its loss, with their types and ranges. A negative weight
    would push the student away from what the loss compares it with; a loss that means it (none so far) says so
    with a class attribute ``negative_weight = True``."""

    model_config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False)

    weight: float = 1.0
    student: str | list[str] = LOGITS
    teacher: str | list[str] = LOGITS
    warmup_epochs: int = Field(0, ge=0)
    until_epoch: int | None = Field(None, ge=1)


def _check_term(index: int, name: Any, spec: Mapping[str, Any], where: str) -> LossOptions:
    """One term's keys against TermOptions and its loss's keys against the loss's options model: the loss's options,
    validated."""
    at = f"{where}.{index}"
    try:
        options = TermOptions(**{k: v for k, v in spec.items() if k in TERM_KEYS})
    except ValidationError as err:
        key, _, msg = format_validation_error(err, TermOptions, prefix=at).partition(": ")
        raise ConfigError(f"{key} (term '{name}'): {msg}") from None
    try:
        loss = loss_options(name, {k: v for k, v in spec.items() if k not in TERM_KEYS | {"name"}}, at)
    except ConfigError as err:
        text = str(err)
        raise ConfigError(text if text.startswith("config error at ") else f"config error at {at}: {text}") from None
    if options.weight < 0 and not getattr(type(loss).loss, "negative_weight", False):
        raise ConfigError(f"config error at {at}.weight (term '{name}'): a negative weight ({options.weight:g}) "
                          "pushes the student away from its target; give a weight >= 0 (0 switches the term off)")
    return loss


def build_terms(specs: Sequence[Mapping[str, Any]], where: str = "distill.losses") -> list[LossTerm]:
    """Build terms from config dicts such as ``{name: kd, weight: 1.0, T: 4}``; other keys go to the loss. Every
    value is checked before any loss is built; errors name the key as `where`.INDEX.KEY."""
    if not specs:
        raise ConfigError(f"{where} is empty; give at least one term, e.g. [{{name: kd, T: 4}}]")
    terms = []
    labels = term_labels([spec.get("name") for spec in specs])
    for index, spec in enumerate(specs):
        spec = dict(spec)
        if "name" not in spec:
            raise ConfigError(f"loss term {spec} has no 'name'; e.g. {{name: kd, weight: 1.0, T: 4}}")
        loss_spec = _check_term(index, spec["name"], spec, where)
        options = {k: spec[k] for k in spec if k in TERM_KEYS - {"name"}}
        try:
            loss = loss_spec.build()
        except (TypeError, ValueError) as err:  # the loss's own range checks (T > 0, alpha in [0, 1]): name the term
            raise ConfigError(f"config error at {where}.{index}: loss '{loss_spec.name}': {err}") from None
        for role in ("student", "teacher"):  # e.g. hidden_mse reads (kd_hidden, kd_mask) unless told otherwise
            if getattr(loss, "default_key", ()):
                options.setdefault(role, list(loss.default_key))
        options.setdefault("warmup_epochs", getattr(loss, "default_warmup_epochs", 0))  # e.g. DKD's 20 epochs
        terms.append(LossTerm(loss, name=labels[index], **options))
    if all(t.until_epoch is not None for t in terms):
        raise ConfigError("every loss term has until_epoch, so nothing would train after the last one stops; add a "
                          "term without it, e.g. {name: ce} (early-stopped KD: KD first, then CE alone)")
    return terms


def tapped_paths(terms: Sequence[LossTerm]) -> tuple[set[str], set[str]]:
    """The student and teacher module paths the terms read (besides logits)."""
    student = {p for t in terms for p in key_paths(t.student_key)} - {LOGITS}
    teacher = {p for t in terms if t.uses_teacher for p in key_paths(t.teacher_key)} - {LOGITS}
    return student, teacher


def check_paths(student: nn.Module, teacher: nn.Module, terms: Sequence[LossTerm]) -> None:
    """Fail at start-up, before any model trains, when a term names a module that its model lacks, or
    when a loss's own check of the two models fails (e.g. a layer map against their layer counts)."""
    for term in terms:  # losses that check the two models (e.g. a layer map against their layer counts)
        check = getattr(term.loss, "check_models", None)
        if check is not None:
            check(student, teacher)
    student_paths, teacher_paths = tapped_paths(terms)
    for role, model, paths in (("student", student, student_paths), ("teacher", teacher, teacher_paths)):
        for path in sorted(paths):
            try:
                resolve_module(model, path.removesuffix(INPUT_SUFFIX))
            except ModelError as err:
                raise ModelError(f"distill.losses: the {role} {err}") from None
