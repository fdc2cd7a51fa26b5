"""Per-model preprocessing, fitted on each training fold only so no fold sees statistics of its held-out rows.

Kinds: ``catboost`` keeps categorical columns as strings (CatBoost encodes them natively, and handles missing
numbers itself); ``ordinal`` maps categories to integers and leaves NaN for LightGBM / XGBoost to route;
``dense`` imputes (median + missing indicators), scales and one-hot encodes for sklearn models and the MLP;
``none`` passes the selected columns through untouched (for estimators that bring their own pipeline).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from kdkit.errors import ConfigError

MISSING = "__missing__"
PREP_KINDS = ("catboost", "ordinal", "dense", "none")


def _as_str(frame: pd.DataFrame, cat: list) -> pd.DataFrame:
    if not cat:
        return frame
    out = frame.copy()
    for col in cat:
        out[col] = out[col].astype(object).where(out[col].notna(), MISSING).astype(str)
    return out


class Preprocessor(TransformerMixin, BaseEstimator):
    """Select ``columns`` from a DataFrame and make them digestible for one model family."""

    def __init__(self, kind: str, columns: list, categorical: list) -> None:
        self.kind = kind
        self.columns = columns
        self.categorical = categorical

    def fit(self, X: pd.DataFrame, y: object = None) -> Preprocessor:
        if self.kind not in PREP_KINDS:
            raise ConfigError(f"unknown preprocessing '{self.kind}'; choose one of: {', '.join(PREP_KINDS)}")
        cat = [c for c in self.columns if c in set(self.categorical)]
        num = [c for c in self.columns if c not in set(cat)]
        self.cat_, self.num_ = cat, num
        frame = _as_str(X[self.columns], cat)
        # positions, not labels: ColumnTransformer reads integer labels (numpy input) as positions of `frame`
        cat, num = [self.columns.index(c) for c in cat], [self.columns.index(c) for c in num]
        if self.kind == "ordinal":
            enc = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan)
            self.ct_ = ColumnTransformer([("cat", enc, cat), ("num", "passthrough", num)]).fit(frame)
        elif self.kind == "dense":
            numeric = make_pipeline(
                SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True), StandardScaler()
            )
            onehot = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
            self.ct_ = ColumnTransformer([("num", numeric, num), ("cat", onehot, cat)]).fit(frame)
        return self

    @property
    def cat_features(self) -> list[int]:
        """Positions of categorical columns in the output (CatBoost's ``cat_features``)."""
        return [self.columns.index(c) for c in self.cat_] if self.kind == "catboost" else []

    def transform(self, X: pd.DataFrame) -> pd.DataFrame | np.ndarray:
        frame = _as_str(X[self.columns], self.cat_)
        if self.kind in ("catboost", "none"):
            return frame if self.kind == "catboost" else X[self.columns]
        return np.asarray(self.ct_.transform(frame), dtype=np.float64)
