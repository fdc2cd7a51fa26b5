"""Quantization-aware training (QAT): an int8 student distilled from a float teacher.

The student trains with *fake quantization* (Jacob et al., CVPR 2018, "Quantization and Training of Neural
Networks for Efficient Integer-Arithmetic-Only Inference"): weights and activations go through

    fake_quant(x) = (clamp(round(x / s) + z, q_min, q_max) - z) * s

in the forward pass (s: scale, z: zero point, both from running min/max statistics), while the backward pass treats the
rounding as the identity (straight-through estimator). The float weights keep training, so a distillation loss
from a float teacher (e.g. Hinton KD) pulls the quantized student towards the teacher (Mishra & Marr, ICLR 2018,
"Apprentice"; Polino et al., ICLR 2018, "Model compression via distillation and quantization"). Afterwards
:func:`convert_quantized` produces a real int8 model for CPU inference.

    qat = prepare_qat(student, example)                       # fake-quantised, conv-bn-relu fused, trainable
    fit(OfflineDistillation(qat, teacher, build_terms([{"name": "kd", "T": 4}])), train, val)
    int8 = convert_quantized(qat)                             # int8 weights and activations, eval mode, CPU

Built on PyTorch's FX graph mode (``prepare_qat_fx`` / ``convert_fx`` with ``get_default_qat_qconfig_mapping``),
which ships with torch and needs no other package. PyTorch marks ``torch.ao.quantization`` as deprecated in favour
of torchao's PT2E flow, and its quantized tensor dtypes as due for removal; in torch 2.14 it still works and its
warnings are silenced here (kdkit calls it, the user cannot act on them).

Tracing: FX records the forward once with symbolic inputs, so Python control flow on tensor *values* cannot be
traced. Inputs here know their rank (from ``example``), so a branch on ``x.dim()`` (like kdkit's ``cnn1d``,
which accepts (N, L) and (N, C, L)) is resolved for the example's rank; the traced student then expects inputs of
that rank. Batch size and other sizes stay free.
"""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, fx, nn
from torch.ao.quantization import disable_observer, get_default_qat_qconfig_mapping
from torch.ao.quantization.fake_quantize import FakeQuantizeBase
from torch.ao.quantization.quantize_fx import convert_fx, prepare_qat_fx

from kdkit.errors import ConfigError, DataError, ModelError

QAT_BACKENDS = ("x86", "fbgemm", "qnnpack")
_BACKEND_KEY = "kdkit_qat_backend"  # in GraphModule.meta, which survives deepcopy (plain attributes do not)
_QUIET = (  # torch-internal deprecation notices, printed on every call; see the module docstring
    "torch.ao.quantization is deprecated",
    "Please use quant_min and quant_max",
    "torch.quantize_per_tensor, torch.quantize_per_channel",
)


@contextmanager
def _quiet_torch_ao() -> Iterator[None]:
    with warnings.catch_warnings():
        for message in _QUIET:
            warnings.filterwarnings("ignore", message=message)
        yield


class _RankedProxy(fx.Proxy):
    """A traced input whose rank is known, so ``x.dim()`` / ``x.ndim`` are plain ints during tracing."""

    def __init__(self, node: fx.Node, tracer: fx.Tracer, rank: int) -> None:
        super().__init__(node, tracer)
        self.rank = rank

    def dim(self) -> int:
        return self.rank

    @property
    def ndim(self) -> int:
        return self.rank


class _InputRankTracer(fx.Tracer):
    """torch.fx's standard tracer, except that the first input's proxy knows the example's rank."""

    def __init__(self, rank: int) -> None:
        super().__init__()
        self.rank = rank
        self._first_input_seen = False

    def proxy(self, node: fx.Node) -> fx.Proxy:
        if node.op == "placeholder" and not self._first_input_seen:
            self._first_input_seen = True
            return _RankedProxy(node, self, self.rank)
        return super().proxy(node)


def trace_student(student: nn.Module, example: Tensor) -> fx.GraphModule:
    """The student's forward as an FX GraphModule (leaf torch.nn modules keep their names); ModelError if the
    forward cannot be traced."""
    tracer = _InputRankTracer(example.dim())
    name = type(student).__name__
    try:
        graph = tracer.trace(student)
    except Exception as err:  # TraceError, TypeError on iterating a proxy, ...: all mean "not traceable"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(
            f"cannot trace {name} for quantization-aware training ({reason}); make its forward FX-traceable: no "
            "Python if/for on tensor values (use torch.where or masks), no len()/iteration over tensors"
        ) from None
    return fx.GraphModule(student, graph, name)


def _check_backend(backend: str) -> None:
    if backend not in QAT_BACKENDS:
        raise ConfigError(f"unknown quantization backend '{backend}'; choose one of: {', '.join(QAT_BACKENDS)}")
    if backend not in torch.backends.quantized.supported_engines:
        raise ConfigError(
            f"this torch build has no '{backend}' quantized engine (it has "
            f"{', '.join(torch.backends.quantized.supported_engines)}); choose another backend"
        )


def _hold_observers_in_eval(module: nn.Module) -> None:
    """PyTorch's fake-quant modules update their ranges on every forward, even in eval mode, so validation or
    `predict` would move them with held-out data. These hooks pause the observer for eval-mode forwards only and
    restore its previous state (so `freeze_qat` and torch's own enable/disable_observer keep working)."""

    def pause(fake_quant: FakeQuantizeBase, _inputs: tuple) -> None:
        if not fake_quant.training:
            fake_quant._kdkit_observer_state = fake_quant.observer_enabled.clone()
            fake_quant.observer_enabled.zero_()

    def restore(fake_quant: FakeQuantizeBase, _inputs: tuple, _output: Tensor) -> None:
        saved = fake_quant.__dict__.pop("_kdkit_observer_state", None)
        if saved is not None:
            fake_quant.observer_enabled.copy_(saved)

    for sub in module.modules():
        if isinstance(sub, FakeQuantizeBase):
            sub.register_forward_pre_hook(pause)
            sub.register_forward_hook(restore)


def prepare_qat(student: nn.Module, example: Tensor, backend: str = "x86") -> fx.GraphModule:
    """A fake-quantised, trainable copy of `student` (conv-bn-relu and linear-relu fused where possible), ready to
    be trained or distilled like any student. `student` itself is left unchanged.

    `example`: a batch of typical inputs (e.g. one training batch). Its rank fixes the input rank of the result, and
    one forward pass on it sets the initial quantization ranges.
    `backend`: the int8 kernels the model is meant for: 'x86' (default; server and desktop CPUs), 'fbgemm' (its
    predecessor) or 'qnnpack' (ARM / mobile). Module paths for feature taps are those of ``result.named_modules()``:
    a fused block takes the conv's name.

    Training from scratch works, but its first epochs are slow: ranges follow a moving average (1% per step) and
    values outside them get no gradient. Fine-tuning a trained float student is the usual recipe.
    """
    _check_backend(backend)
    if not isinstance(example, Tensor) or example.dim() == 0 or len(example) == 0:
        raise DataError("prepare_qat needs `example` as a non-empty batch tensor of inputs, e.g. next(iter(loader))[0]")
    device = next(iter(student.parameters()), example).device
    traced = trace_student(copy.deepcopy(student), example.to(device))
    with _quiet_torch_ao():
        qat = prepare_qat_fx(traced.train(), get_default_qat_qconfig_mapping(backend), (example.to(device),))
    qat.meta[_BACKEND_KEY] = backend
    with torch.no_grad():
        # initial ranges from the example; this also gives per-channel observers their shapes, which a checkpoint
        # of a trained QAT model needs to load (load_weights). Eval mode: BatchNorm statistics stay as they are.
        qat.eval()(example.to(device))
    _hold_observers_in_eval(qat)
    return qat.train()


def freeze_qat(qat_student: nn.Module, observers: bool = True, batchnorm: bool = True) -> nn.Module:
    """Stop updating quantization ranges and/or the statistics of BatchNorm layers fused into a conv or linear
    layer (in place; returns the model). BatchNorm left unfused keeps updating.

    A common QAT recipe (Krishnamoorthi 2018, "Quantizing deep convolutional networks for efficient inference")
    trains a few epochs, then freezes both so the last epochs fine-tune the weights against fixed ranges and
    statistics that match what int8 inference will use. Call it between two `fit` runs.
    """
    if observers:
        qat_student.apply(disable_observer)
    if batchnorm:  # torch's freeze_bn_stats skips LinearBn1d; the modules' own method covers every fused kind
        for module in qat_student.modules():
            if callable(getattr(module, "freeze_bn_stats", None)):
                module.freeze_bn_stats()
    return qat_student


def convert_quantized(qat_student: fx.GraphModule) -> fx.GraphModule:
    """An int8 copy of a model from :func:`prepare_qat`, in eval mode on the CPU; the QAT model is not modified.

    Weights are stored as int8, activations are quantized between layers, inputs and outputs stay float."""
    backend = getattr(qat_student, "meta", {}).get(_BACKEND_KEY)
    if backend is None:
        raise ModelError(
            f"{type(qat_student).__name__} was not prepared for quantization; make it with "
            "kdkit.models.quantization.prepare_qat(student, example) and train it before converting"
        )
    model = copy.deepcopy(qat_student).cpu().eval()
    previous = torch.backends.quantized.engine
    try:  # weights are packed for the engine that is current during conversion
        torch.backends.quantized.engine = backend
        with _quiet_torch_ao():
            return convert_fx(model)
    finally:
        torch.backends.quantized.engine = previous


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: comparable between float and int8 models (safetensors, which
    kdkit's checkpoints and ``metrics.weights_size_bytes`` use, cannot store quantized tensors)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes
