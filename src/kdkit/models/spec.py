"""A model's entry in a config (teacher:, student:, a scheme's assistants, teachers or peers). Its own module, light
(pydantic only), so that the schemes can declare model-valued options without importing the run config."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from kdkit.config.types import LaxPath, StrictModel
from kdkit.errors import KdkitError


class ModelConfig(StrictModel):
    name: str
    params: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the model builder")
    checkpoint: LaxPath | None = Field(None, description="weights to load (.safetensors or a torch state dict)")
    train: dict[str, Any] = Field(default_factory=dict, description="overrides of the top-level train settings")
    quantize: Literal["x86", "fbgemm", "qnnpack"] | None = Field(
        None, description="student only: train it quantization-aware (fake int8) and measure its int8 conversion "
        "for this CPU backend (x86; qnnpack for ARM)",
    )

    @field_validator("checkpoint")
    @classmethod
    def _exists(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"file not found: {path} (give the path of a .safetensors or .pt weights file)")
        return path

    @field_validator("params")
    @classmethod
    def _pretrained_exists(cls, params: dict[str, Any]) -> dict[str, Any]:
        # checked here so a wrong path fails before any data is loaded or model trained
        path = params.get("pretrained")
        if isinstance(path, str) and not Path(path).is_file():
            raise ValueError(f"params.pretrained: file not found: {path} (give a local weights file)")
        return params

    @model_validator(mode="after")
    def _known_model(self) -> ModelConfig:
        # the registry checks name and argument names without building: a typo is reported before data is loaded
        from kdkit.models import check_model_args

        try:
            check_model_args(self.name, self.params)
        except KdkitError as err:
            raise ValueError(str(err)) from None
        return self
