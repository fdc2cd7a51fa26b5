"""kdkit: knowledge distillation from a big teacher to a small student, measured.

Python API in a nutshell::

    from kdkit import OfflineDistillation, Supervised, TrainSettings, build_terms, fit
    scheme = OfflineDistillation(student, teacher, build_terms([{"name": "kd", "T": 4, "alpha": 0.1}]))
    fit(scheme, train_loader, val_loader, TrainSettings(epochs=20))

The names below are imported on first use (PEP 562), so `import kdkit` and the command line start in a fraction of
a second and load torch, scikit-learn or transformers only when a command needs them.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "load_weights": "kdkit.io.checkpoint", "save_weights": "kdkit.io.checkpoint",
    "ConfigError": "kdkit.errors", "DataError": "kdkit.errors", "KdkitError": "kdkit.errors",
    "ModelError": "kdkit.errors", "NonFiniteLossError": "kdkit.errors",
    "LoadedModel": "kdkit.deploy.inference", "load": "kdkit.families.runs",
    "LOSSES": "kdkit.losses", "KDLoss": "kdkit.losses", "TokenKD": "kdkit.losses", "build_loss": "kdkit.losses",
    "kd_loss": "kdkit.losses", "token_kd_loss": "kdkit.losses",
    "build_model": "kdkit.models",
    "convert_quantized": "kdkit.models.quantization", "freeze_qat": "kdkit.models.quantization",
    "prepare_qat": "kdkit.models.quantization",
    "MultiTeacherDistillation": "kdkit.schemes", "MutualLearning": "kdkit.schemes",
    "OfflineDistillation": "kdkit.schemes", "Scheme": "kdkit.schemes", "SelfDistillation": "kdkit.schemes",
    "Supervised": "kdkit.schemes", "distill_born_again": "kdkit.schemes", "distill_data_free": "kdkit.schemes",
    "distill_through_assistants": "kdkit.schemes", "synthesize": "kdkit.schemes",
    "TrainSettings": "kdkit.trainer.settings",
    "Taps": "kdkit.taps",
    "LossTerm": "kdkit.terms", "build_terms": "kdkit.terms",
    "FitResult": "kdkit.trainer.loop", "fit": "kdkit.trainer.loop", "predict": "kdkit.trainer.loop",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:  # AttributeError lets `from kdkit import diagnosis` fall back to importing the submodule
        raise AttributeError(f"module 'kdkit' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

