"""Tabular distillation with privileged columns.

A teacher (gradient boosting by default) is trained on every training column; its out-of-fold probabilities
become the targets of a student that only sees the columns available at prediction time.

    from kdkit.families.tabular import DistilledClassifier
    model = DistilledClassifier(teacher="catboost", student="lightgbm", student_columns=test_columns)
    model.fit(train.drop(columns="Y_LABEL"), train["Y_LABEL"]).predict_proba(test)
"""

from __future__ import annotations

import importlib
from typing import Any

# imported on first use (PEP 562): `kdkit tabular --help` must not wait for scikit-learn and the boosting libraries
_EXPORTS = {
    "DistilledClassifier": "kdkit.families.tabular.estimator",
    "TorchMLPClassifier": "kdkit.families.tabular.torch_mlp", "FAMILIES": "kdkit.families.tabular.models",
    "best_threshold": "kdkit.families.tabular.evaluate", "scores": "kdkit.families.tabular.evaluate",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kdkit.families.tabular' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)
