"""Layer maps for transformer-to-transformer losses: which teacher layer each student layer learns from.

Layers count from 1 (layer 0 is the embedding output, see :mod:`kdkit.losses.embedding_mse`). A map is a list of
(student layer, teacher layer) pairs; how a loss's ``layer_map`` option is read:

* ``None`` / ``"uniform"`` (TinyBERT, Jiao et al. 2020): student layer i <- teacher layer m(i) = round(i * L_t / L_s),
  i = 1..L_s; with L_t = 6 and L_s = 2: [(1, 3), (2, 6)];
* ``"last"``: the last layers only, [(L_s, L_t)] (MiniLM, Wang et al. 2020, distils the last layer);
* a list of L_s teacher layers ``[3, 6]``: student layer i <- the i-th entry;
* a list of pairs ``[[1, 3], [2, 6]]``: exactly these (each student layer at most once).

:func:`parse_layer_map` checks the form when the loss is built (from a config: before anything runs);
:func:`resolve_layer_map` checks it against the two models' layer counts (``check_models``, called by
``kdkit.terms.check_paths`` before any training) and once more on the tensors of each step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from kdkit.errors import ConfigError, ModelError
from kdkit.losses.registry import LossOptions

LayerMapSpec = str | list[int] | list[tuple[int, int]] | None


def parse_layer_map(spec: Any, loss: str) -> LayerMapSpec:
    """The spec in a canonical form; a wrong form is one ConfigError naming the loss."""
    if spec is None or spec in ("uniform", "last"):
        return spec
    hint = f"{loss}: layer_map must be 'uniform', 'last', a list of teacher layers (one per student layer) or a " \
           f"list of [student, teacher] pairs"
    if isinstance(spec, str) or not isinstance(spec, Sequence) or not spec:
        raise ConfigError(f"{hint}; got {spec!r}")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in spec):
        return [int(v) for v in spec]
    pairs = []
    for item in spec:
        if (not isinstance(item, Sequence) or isinstance(item, str) or len(item) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in item)):
            raise ConfigError(f"{hint}; got {spec!r}")
        pairs.append((int(item[0]), int(item[1])))
    students = [s for s, _ in pairs]
    if len(set(students)) != len(students):
        twice = sorted({s for s in students if students.count(s) > 1})
        raise ConfigError(f"{loss}: layer_map names student layer(s) {twice} more than once; give each student "
                          "layer one teacher layer")
    return pairs


def resolve_layer_map(spec: LayerMapSpec, student_layers: int, teacher_layers: int, loss: str,
                      error: type[Exception] = ConfigError) -> list[tuple[int, int]]:
    """(student layer, teacher layer) pairs, 1-based; out-of-range layers or a wrong count give one line."""
    if student_layers < 1 or teacher_layers < 1:
        raise error(f"{loss}: the student has {student_layers} and the teacher {teacher_layers} layers; both need one")
    if spec is None or spec == "uniform":
        return [(i, max(1, round(i * teacher_layers / student_layers))) for i in range(1, student_layers + 1)]
    if spec == "last":
        return [(student_layers, teacher_layers)]
    if spec and isinstance(spec[0], int):
        if len(spec) != student_layers:
            raise error(f"{loss}: layer_map lists {len(spec)} teacher layers but the student has {student_layers} "
                        "layers; give one teacher layer per student layer, or [student, teacher] pairs")
        pairs = list(zip(range(1, student_layers + 1), spec, strict=True))
    else:
        pairs = list(spec)
    for s, t in pairs:
        if not 1 <= s <= student_layers or not 1 <= t <= teacher_layers:
            raise error(f"{loss}: layer_map pair ({s}, {t}) is out of range: student layers are 1..{student_layers}, "
                        f"teacher layers 1..{teacher_layers}")
    return pairs


def model_layers(model: nn.Module, role: str, loss: str) -> int:
    """The number of encoder layers of an ``hf:`` text model (possibly wrapped by DDP); one line otherwise."""
    inner = model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model
    count = getattr(inner, "num_layers", None)
    if not isinstance(count, int):
        raise ModelError(f"{loss} compares transformer layers, but the {role} ({type(inner).__name__}) is not an hf: "
                         "text model; use hf:<folder> models with data.raw_text: true")
    return count


def check_same_tokenizer(student: nn.Module, teacher: nn.Module, loss: str) -> None:
    """Token-aligned losses need both models to split text into the same tokens."""
    ids = [getattr(m, "tokenizer_id", None) for m in (student, teacher)]
    if ids[0] != ids[1]:
        raise ModelError(f"{loss} compares the models token by token, but they tokenize differently (student "
                         f"{ids[0]}, teacher {ids[1]}); give the student the teacher's tokenizer (e.g. keep_layers)")


def masked_mse(student: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
    """Mean over the real tokens (mask (N, T) = 1) and the features of (student - teacher)^2, tensors (N, T, D)."""
    weights = mask.unsqueeze(-1).to(student.dtype)
    return ((student - teacher).pow(2) * weights).sum() / (weights.sum() * student.shape[-1]).clamp(min=1.0)


def check_aligned(student: Tensor, teacher: Tensor, loss: str) -> None:
    """Token-aligned tensors must have the same batch and token counts."""
    if student.shape[0] != teacher.shape[0] or student.shape[-2] != teacher.shape[-2]:
        raise ModelError(f"{loss}: student and teacher tokens do not line up (shapes {tuple(student.shape)} and "
                         f"{tuple(teacher.shape)}); both models must use the same tokenizer")


class Projection(nn.Module):
    """W in TinyBERT's H_S W: a learned linear map of the first tensor of a (features, mask, ...) tuple from the
    student's width to the teacher's, trained with the student and never part of it."""

    def __init__(self, student_dim: int, teacher_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(student_dim, teacher_dim, bias=False)

    def forward(self, features: Sequence[Tensor]) -> tuple[Tensor, ...]:
        return (self.linear(features[0]), *features[1:])

    @classmethod
    def when_widths_differ(cls, student: Sequence[Tensor], teacher: Sequence[Tensor]) -> Projection | None:
        """A projection for probed (hidden, mask) tuples whose last dims differ; None when they match."""
        ds, dt = student[0].shape[-1], teacher[0].shape[-1]
        return None if ds == dt else cls(ds, dt)


class LayerLoss(nn.Module):
    """Base of the transformer-to-transformer losses: reads tap points of hf: text models (``default_key``),
    holds a layer map, and checks it against the models before training (``check_models``)."""

    default_key: tuple[str, ...] = ()
    default_map: LayerMapSpec = None
    loss_name = "layer loss"

    def __init__(self, layer_map: Any = None) -> None:
        super().__init__()
        self.layer_map = parse_layer_map(layer_map if layer_map is not None else self.default_map, self.loss_name)

    def pairs(self, student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
        return resolve_layer_map(self.layer_map, student_layers, teacher_layers, self.loss_name, ModelError)

    def check_models(self, student: nn.Module, teacher: nn.Module) -> None:
        """One line before training when the layer map does not fit the models or their tokens do not line up."""
        resolve_layer_map(self.layer_map, model_layers(student, "student", self.loss_name),
                          model_layers(teacher, "teacher", self.loss_name), self.loss_name)
        check_same_tokenizer(student, teacher, self.loss_name)


class LayerLossOptions(LossOptions):
    """The key every layer-to-layer loss takes (a base: registers nothing until a subclass names its loss)."""

    layer_map: Any = None
