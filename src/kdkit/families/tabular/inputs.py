"""What ``DistilledClassifier`` accepts as X and y, checked the way scikit-learn users expect.

X is a pandas DataFrame (columns by name; text columns become categories) or anything 2-D and numeric that
``sklearn.utils.check_array`` takes (columns by position, labelled 0..p-1). NaN is allowed (a missing value, which
every preprocessing handles); infinity, sparse matrices, text in arrays and 1-D X are refused. Errors are
kdkit errors (ValueError subclasses, one line) whose wording contains what scikit-learn's own checks look for
("Reshape your data", "0 feature(s)", "X has 3 features, but ... is expecting 5 features as input"), so code
written against scikit-learn's messages keeps working.

At prediction an array is read either as fit's columns (``n_features_in_`` wide) or as the prediction columns
alone (the student's, in ``student_columns_`` order): the privileged columns of fit usually do not exist then.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import DataConversionWarning
from sklearn.utils import check_array
from sklearn.utils.multiclass import check_classification_targets

from kdkit.errors import ConfigError, DataError, KdkitWarning


def _one_line(err: Exception) -> str:
    """scikit-learn's message without the array dumps and line breaks it sometimes carries."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip() and not line.startswith("array=")]
    return " ".join(lines)


def _check_shape(shape: tuple[int, ...]) -> None:
    if len(shape) != 2:
        raise DataError(f"X must be 2-D (rows x columns), got shape {shape}. Reshape your data with "
                        "X.reshape(-1, 1) for one column or X.reshape(1, -1) for one row")
    if shape[0] < 1:
        raise DataError(f"X has 0 sample(s) (shape={shape}) while a minimum of 1 is required; give some rows")
    if shape[1] < 1:
        raise DataError(f"X has 0 feature(s) (shape={shape}) while a minimum of 1 is required; give some columns")


def as_frame(X: Any) -> pd.DataFrame:
    """X as a DataFrame: a DataFrame keeps its column names (index reset), an array gets columns 0..p-1."""
    if isinstance(X, pd.DataFrame):
        _check_shape(X.shape)
        return X.reset_index(drop=True)
    try:
        arr = check_array(X, dtype="numeric", ensure_all_finite="allow-nan", accept_sparse=False,
                          ensure_min_samples=1, ensure_min_features=1)
    except ValueError as err:
        hint = ("; pass a pandas DataFrame to have text columns read as categories"
                if "could not convert" in str(err) or "strings" in str(err) else "")
        raise DataError(f"X is not usable: {_one_line(err)}{hint}") from None
    return pd.DataFrame(arr)


def select(X: Any, columns: Sequence, n_features_in: int | None, columns_in: Sequence | None,
           name: str, what: str) -> pd.DataFrame:
    """Rows of X with `columns` (checked present and finite). An array is read as fit's columns when it is
    `n_features_in` wide, as `columns` alone (in that order) when it is exactly that wide, and refused otherwise."""
    frame = as_frame(X)
    columns = list(columns)
    if not isinstance(X, pd.DataFrame):
        width = frame.shape[1]
        if n_features_in is not None and width == n_features_in:
            frame.columns = list(columns_in) if columns_in is not None else list(range(width))
        elif width == len(columns):
            frame.columns = columns
        else:
            expected = f"{n_features_in} features as input" if n_features_in is not None else "features as input"
            raise DataError(f"X has {width} features, but {name} is expecting {expected} (the columns of fit's X) "
                            f"or the {len(columns)} {what} columns alone, in the order they were given")
    check_columns(frame, columns, f"{what} columns")
    check_finite(frame, columns, "data to predict")
    return frame


def check_columns(frame: pd.DataFrame, columns: Sequence, what: str) -> list:
    """`columns` as a list, each present in `frame`; at least one."""
    columns = list(columns)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        raise DataError(f"{what} not found in the data: {shown}; check the column names")
    if not columns:
        raise ConfigError(f"{what} is empty; give at least one column")
    return columns


def check_finite(frame: pd.DataFrame, columns: Sequence, what: str) -> None:
    """Infinite feature values are refused: no model treats them as anything meaningful, and scaled or binned
    they silently become NaN or an extreme bin. NaN stays allowed: it marks a missing value, which the
    boosted models handle natively."""
    for column in columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            infinite = np.isinf(values.to_numpy(dtype=float, na_value=np.nan))
            if infinite.any():
                row = int(np.flatnonzero(infinite)[0])
                raise DataError(f"{what}: column {column!r} has {int(infinite.sum())} infinite value(s) (first at "
                                f"row {row}); replace them, e.g. by a large finite value or by NaN (missing)")


def check_numeric(frame: pd.DataFrame, columns: Sequence, what: str) -> None:
    """Columns that held numbers in fit must hold numbers: a text value ('abc') has no meaning to the model, and
    the libraries would fail on it with a traceback. Numbers written as text are converted; None and NaN are
    missing values."""
    for column in columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            continue
        parsed = pd.to_numeric(values.where(values.notna()), errors="coerce")
        bad = (values.notna() & parsed.isna()).to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"{what}: column {column!r} is numeric but row {row} holds the non-numeric value "
                            f"{values.iloc[row]!r} ({int(bad.sum())} such row(s)); give numbers, or NaN for a "
                            "missing value")
        frame[column] = parsed


class UnseenCategoriesWarning(KdkitWarning):
    """Rows to predict hold categories that no training row had: the model learnt nothing about them."""


def seen_categories(frame: pd.DataFrame, columns: Sequence) -> dict:
    """The values of each categorical column in fit, as the preprocessing reads them (text; missing left out)."""
    return {column: sorted(set(frame[column].dropna().astype(str))) for column in columns}


def warn_unseen(frame: pd.DataFrame, categories: dict | None, columns: Sequence) -> None:
    """One warning per column whose rows hold categories absent from fit (e.g. 'castle' in a column that held
    'house' and 'flat'), naming the column and the values: their rows are predicted as if the value were unknown,
    which can move a probability a long way without a word otherwise."""
    for column in columns:
        known = (categories or {}).get(column)
        if known is None:
            continue
        values = frame[column].dropna().astype(str)
        unseen = values[~values.isin(set(known))]
        if unseen.empty:
            continue
        names = sorted(set(unseen))
        shown = ", ".join(map(repr, names[:5])) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")
        kinds = "category" if len(names) == 1 else "categories"
        warnings.warn(f"column {column!r}: {len(unseen)} row(s) hold {len(names)} {kinds} never seen in training: "
                      f"{shown}; the model learnt nothing about them and reads them as an unknown value",
                      UnseenCategoriesWarning, stacklevel=4)


def target(y: Any, n_rows: int, name: str) -> np.ndarray:
    """y as a 1-D array of class labels, one per row; a column vector is flattened with scikit-learn's
    DataConversionWarning, a continuous target is refused."""
    if y is None:
        raise DataError(f"{name} requires y to be passed, but the target y is None; give one class label per row")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn("A column-vector y was passed when a 1d array was expected; y is flattened with ravel()",
                      DataConversionWarning, stacklevel=3)
        y = y.ravel()
    if y.ndim != 1 or len(y) != n_rows:
        raise DataError(f"y must be 1-D with one label per row ({n_rows}), got shape {y.shape}")
    if pd.isna(pd.Series(y)).any():
        raise DataError("the target has missing values; drop those rows or fill them")
    try:
        check_classification_targets(y)
    except ValueError as err:
        raise DataError(f"{_one_line(err)}; {name} needs class labels (use a regressor for a numeric target)") \
            from None
    return y
