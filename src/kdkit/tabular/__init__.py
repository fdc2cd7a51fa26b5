"""Tabular distillation with privileged columns.

A teacher (gradient boosting by default) is trained on every training column; its out-of-fold probabilities
become the targets of a student that only sees the columns available at prediction time.

    from kdkit.tabular import DistilledClassifier
    model = DistilledClassifier(teacher="catboost", student="lightgbm", student_columns=test_columns)
    model.fit(train.drop(columns="Y_LABEL"), train["Y_LABEL"]).predict_proba(test)
"""

from kdkit.tabular.estimator import DistilledClassifier
from kdkit.tabular.evaluate import best_threshold, scores
from kdkit.tabular.models import FAMILIES
from kdkit.tabular.torch_mlp import TorchMLPClassifier

__all__ = ["DistilledClassifier", "TorchMLPClassifier", "FAMILIES", "best_threshold", "scores"]
