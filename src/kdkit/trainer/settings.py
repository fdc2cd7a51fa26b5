"""Training settings shared by the Python API, the YAML config and the CLI."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

HIGHER_IS_BETTER = {"accuracy": True, "macro_f1": True, "agreement": True,
                    "nll": False, "ece": False, "predictive_kl": False, "loss": False}

# one message for both places that can tell (the settings, given device: cpu; fit, once `auto` resolved to the CPU)
FP16_ON_CPU = ("precision fp16 needs a CUDA device (CPUs lack fast float16 kernels, and float16 gradients need a "
               "scaler); use precision: bf16 on the CPU")


class TrainSettings(BaseModel):
    """How one model is trained. Defaults: AdamW with a cosine schedule; the model ends at its best epoch by
    validation macro F1 (``keep: last`` keeps the final epoch instead; both are saved as checkpoints)."""

    # strict: `epochs: yes` is not 1 and `lr: "0.01"` not a number; NaN and infinity are never settings
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    epochs: int = Field(20, ge=1)
    batch_size: int = Field(128, ge=1, le=2**31 - 1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    momentum: float = Field(0.9, ge=0, lt=1)
    scheduler: Literal["cosine", "none"] = "cosine"
    grad_clip: float | None = Field(None, gt=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    monitor: Literal["accuracy", "macro_f1", "nll", "ece", "agreement", "predictive_kl", "loss"] = "macro_f1"
    patience: int | None = Field(None, ge=1, description="stop after this many epochs without improvement")
    keep: Literal["best", "last"] = Field(
        "best", description="weights the model ends with: the best epoch by `monitor`, or the last epoch (a small "
        "validation set makes 'best' a noisy pick that favours early epochs; with a cosine schedule 'last' is the "
        "converged model)",
    )
    seed: int = Field(0, ge=0, lt=2**32)
    device: str = Field("auto", description="auto (CUDA when available), cpu, cuda, cuda:N, mps or xpu")
    checkpoint_every_steps: int | None = Field(
        None, ge=1, description="also write the resumable checkpoint every this many steps, not only at the end of "
        "every epoch (for long epochs; see docs/run-directory.md#resuming-a-run)",
    )
    progress: bool = True
    augment: list[dict[str, Any]] = Field(
        default_factory=list, description="batch augmentation in the training step, one view that the teacher and "
        "the student both see, e.g. [{name: crop, padding: 4}, {name: flip}, {name: mixup, alpha: 0.2}] (ops: crop, "
        "flip, mixup, cutmix; see kdkit.data.augment)",
    )

    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="the training forward (teacher, student, loss terms) under autocast to bfloat16 or "
        "float16; weights, optimizer state and validation stay float32; fp16 needs CUDA (with a gradient scaler), "
        "bf16 runs on CPU and CUDA",
    )
    channels_last: bool = Field(
        False, description="image models (4-D inputs): models and batches in channels-last memory format, faster "
        "convolutions on recent CPUs and GPUs; no effect on other inputs",
    )
    compile: bool = Field(
        False, description="torch.compile the student for training (the first steps pay the compilation; needs a C++ "
        "compiler on CPU); the model is handed back uncompiled",
    )
    grad_accumulation: int = Field(
        1, ge=1, description="micro-batches per optimizer step, each loss scaled by 1/N: the gradients of a batch of "
        "N x batch_size in the memory of one batch_size (schedule steps count optimizer steps)",
    )

    @model_validator(mode="after")
    def _fp16_needs_cuda(self) -> TrainSettings:
        if self.precision == "fp16" and self.device.startswith("cpu"):
            raise ValueError(FP16_ON_CPU)
        return self

    @field_validator("device")
    @classmethod
    def _device_form(cls, device: str) -> str:
        from kdkit.config.devices import check_form  # whether this machine has it is checked by the commands that train

        return check_form(device)

    @field_validator("augment")
    @classmethod
    def _buildable(cls, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from kdkit.data.augment import build_augment  # here: settings stay importable without torch

        build_augment(specs)  # a bad op or argument fails when the settings are made, not at the first batch
        return specs
