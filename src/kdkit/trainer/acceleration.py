"""The training-speed options of TrainSettings, applied by `fit`: mixed precision (autocast, with a gradient scaler
for float16), channels-last memory format for image models and torch.compile of the student.

None of them changes what is trained: the weights and the optimizer state stay float32, validation runs in
float32, and a compiled student is handed back uncompiled. With the defaults (fp32, no channels-last, no compile)
`fit` runs exactly the operations it ran before these options existed.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from kdkit.errors import ConfigError
from kdkit.trainer.settings import FP16_ON_CPU

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> None:
    """fp16 only on CUDA (decided once `device: auto` has resolved); bf16 and fp32 anywhere."""
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"train.precision: {FP16_ON_CPU}")


def autocast(precision: str, device: torch.device) -> AbstractContextManager[Any]:
    """The context of the training forward: autocast to the precision's dtype, or nothing for fp32."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """float16 gradients underflow without loss scaling; bfloat16 has float32's range and needs none."""
    if precision == "fp16" and device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None


def scheme_modules(scheme: Any) -> list[nn.Module]:
    """Every model a scheme holds (student, extras, teachers, peers, an EMA teacher), found by attribute."""
    return [m for m in vars(scheme).values() if isinstance(m, nn.Module)]


def to_channels_last(scheme: Any) -> None:
    """Channels-last weights for every model of the scheme; only 4-D tensors (2-D convolutions) change, so a model
    without them is left as it was."""
    for module in scheme_modules(scheme):
        module.to(memory_format=torch.channels_last)


def channels_last_input(x: Tensor) -> Tensor:
    """A 4-D image batch in channels-last layout; any other input unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def compile_student(student: nn.Module) -> None:
    """torch.compile the student in place (nn.Module.compile): its state dict keys and hooks stay as they are."""
    student.compile()


def uncompile(student: nn.Module) -> None:
    """Undo compile_student: the module calls its eager forward again (later evaluation, export, quantization)."""
    if getattr(student, "_compiled_call_impl", None) is not None:
        student._compiled_call_impl = None  # what nn.Module.compile sets; None is its uncompiled state
