"""The torch MLP student and the native-format model files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kdkit.families.tabular import DistilledClassifier, TorchMLPClassifier
from kdkit.families.tabular.save import save_distiller

STUDENT_COLS = ["a", "b", "c", "kind"]


def test_mlp_is_reproducible_and_leaves_global_rng_alone() -> None:
    rng = np.random.default_rng(0)
    X, q = rng.normal(size=(64, 5)), rng.dirichlet(np.ones(3), size=64)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = TorchMLPClassifier(epochs=3, seed=7).fit(X, q.argmax(1), soft_targets=q).predict_proba(X)
    assert torch.equal(torch.rand(1), before)
    b = TorchMLPClassifier(epochs=3, seed=7).fit(X, q.argmax(1), soft_targets=q).predict_proba(X)
    assert np.array_equal(a, b) and np.allclose(a.sum(1), 1.0)


def test_mlp_kd_loss_at_t1_is_soft_cross_entropy_minus_entropy() -> None:
    mlp = TorchMLPClassifier(temperature=1.0, alpha=0.0)
    logits, q = torch.randn(8, 4), torch.softmax(torch.randn(8, 4), 1)
    soft_ce = -(q * torch.log_softmax(logits, 1)).sum(1).mean()
    entropy = -(q * q.log()).sum(1).mean()
    assert torch.allclose(mlp._loss(logits, q.argmax(1), q, None), soft_ce - entropy, atol=1e-5)


def test_mlp_kd_loss_is_the_shared_kernel_and_weights_rows() -> None:
    """The MLP's KD loss is kdkit.losses.kd_loss on teacher logits log q; row weights reweigh its per-row terms."""
    from kdkit.losses import KDLoss

    torch.manual_seed(0)
    mlp = TorchMLPClassifier(temperature=2.5, alpha=0.3)
    logits, q = torch.randn(6, 3), torch.softmax(torch.randn(6, 3), 1)
    y = q.argmax(1)
    assert torch.allclose(mlp._loss(logits, y, q, None), KDLoss(T=2.5, alpha=0.3)(logits, q.log(), y), atol=1e-6)
    assert torch.allclose(mlp._loss(logits, y, q, torch.ones(6)), mlp._loss(logits, y, q, None), atol=1e-6)
    only_first = mlp._loss(logits, y, q, torch.tensor([1.0, 0, 0, 0, 0, 0]))
    assert torch.allclose(only_first, mlp._loss(logits[:1], y[:1], q[:1], None), atol=1e-6)


@pytest.mark.parametrize(("family", "ext", "params"), [
    ("catboost", ".cbm", {"iterations": 20}), ("lightgbm", ".txt", {"n_estimators": 20}),
    ("xgboost", ".json", {"n_estimators": 20}), ("mlp", ".safetensors", {"epochs": 3}),
])
def test_models_are_saved_in_native_formats(binary_table, tmp_path: Path, family: str, ext: str, params) -> None:
    X, y = binary_table
    model = DistilledClassifier(teacher="logreg", student=family, student_params=params,
                                student_columns=STUDENT_COLS, n_splits=2).fit(X, y)
    manifest = json.loads(save_distiller(model, tmp_path).read_text())
    files = manifest["student_folds"][0]["models"]
    assert files[0].endswith(ext) and (tmp_path / files[0]).exists()
    assert manifest["student_columns"] == STUDENT_COLS and manifest["classes"] == [0, 1]
