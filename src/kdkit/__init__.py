"""kdkit: knowledge distillation from a big teacher to a small student, measured.

Python API in a nutshell::

    from kdkit import OfflineDistillation, Supervised, TrainSettings, build_terms, fit
    scheme = OfflineDistillation(student, teacher, build_terms([{"name": "kd", "T": 4, "alpha": 0.1}]))
    fit(scheme, train_loader, val_loader, TrainSettings(epochs=20))
"""

from kdkit.checkpoint import load_weights, save_weights
from kdkit.errors import ConfigError, DataError, KdkitError, ModelError, NonFiniteLossError
from kdkit.inference import LoadedModel, load
from kdkit.losses import LOSSES, KDLoss, TokenKD, build_loss, kd_loss, token_kd_loss
from kdkit.models import build_model
from kdkit.quantization import convert_quantized, freeze_qat, prepare_qat
from kdkit.schemes import (
    MultiTeacherDistillation,
    MutualLearning,
    OfflineDistillation,
    Scheme,
    SelfDistillation,
    Supervised,
    distill_born_again,
    distill_data_free,
    distill_through_assistants,
    synthesize,
)
from kdkit.settings import TrainSettings
from kdkit.taps import Taps
from kdkit.terms import LossTerm, build_terms
from kdkit.trainer import FitResult, fit, predict

__version__ = "0.1.0"

__all__ = [
    "LOSSES", "ConfigError", "DataError", "FitResult", "KDLoss", "KdkitError", "LoadedModel", "LossTerm",
    "ModelError",
    "MultiTeacherDistillation", "MutualLearning", "NonFiniteLossError", "OfflineDistillation", "Scheme",
    "SelfDistillation", "Supervised", "Taps", "TokenKD", "TrainSettings", "build_loss", "build_model", "build_terms",
    "convert_quantized", "distill_born_again", "distill_data_free", "distill_through_assistants", "fit", "freeze_qat",
    "kd_loss", "load", "load_weights", "predict", "prepare_qat", "save_weights", "synthesize",
    "token_kd_loss",
]
