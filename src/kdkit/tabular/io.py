"""Load the train/test CSVs and refuse bad input with one clear line (``DataError``, exit code 2 in the CLI).

Checks: file missing or empty, duplicated column names, target missing / with missing values / a single class,
test columns that the train table lacks, id columns missing from the test file, and a non-numeric value in a
numeric column. A train column counts as numeric when at least half of its non-empty cells parse as numbers,
a test column when it is numeric in the train file; the first cell that does not parse is reported with its
line number. Other text columns are categorical.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from kdkit.errors import DataError


def _shown(names: list) -> str:
    return ", ".join(map(str, names[:6])) + (f" ... ({len(names)} in all)" if len(names) > 6 else "")


def read_table(path: Path | str, text_columns: set[str] | None = None) -> pd.DataFrame:
    """Read one CSV; empty files, header-only files and duplicated column names are errors.

    ``text_columns`` are read as strings (categories of the train file stay categories in the test file
    even when every test value happens to look like a number).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        header = next(csv.reader(fh), None)
    if not header or all(not h.strip() for h in header):
        raise DataError(f"{path}: file is empty; expected a CSV with a header row")
    dupes = [name for name, n in Counter(h.strip() for h in header).items() if n > 1]
    if dupes:
        raise DataError(f"{path}: duplicated column names {_shown(dupes)}; rename them so each is unique")
    try:
        dtype = {c: str for c in header if c.strip() in (text_columns or set())}
        frame = pd.read_csv(path, low_memory=False, encoding="utf-8-sig", dtype=dtype or None)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        first = str(err).strip().splitlines()[0]
        raise DataError(f"{path}: cannot parse as CSV ({first})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise DataError(f"{path}: has a header but no data rows")
    return frame


def _check_numeric(frame: pd.DataFrame, path: Path, numeric_elsewhere: set[str]) -> None:
    for col in frame.columns:
        if pd.api.types.is_numeric_dtype(frame[col]) or pd.api.types.is_bool_dtype(frame[col]):
            continue
        values = frame[col]
        present = values.notna() & (values.astype(str).str.strip() != "")
        parsed = pd.to_numeric(values.where(present), errors="coerce")
        bad = present & parsed.isna()
        if not bad.any() and present.any():
            frame[col] = parsed  # numbers with stray whitespace, or an all-empty-string column
            continue
        numeric = col in numeric_elsewhere or parsed.notna().sum() >= 0.5 * present.sum()
        if numeric and bad.any():
            row = int(bad.to_numpy().argmax())
            raise DataError(
                f"{path}: column '{col}' is numeric but line {row + 2} has the non-numeric value "
                f"{values.iloc[row]!r}; fix it or leave the cell empty for a missing value"
            )


@dataclass
class TabularTask:
    """Validated inputs of ``kdkit tabular fit``: features, labels and the two column sets."""

    X: pd.DataFrame
    y: pd.Series
    teacher_columns: list[str]
    student_columns: list[str]
    test: pd.DataFrame | None = None
    test_ids: pd.DataFrame | None = None
    id_columns: list[str] = field(default_factory=list)


def load_task(
    train: Path | str,
    target: str,
    test: Path | str | None = None,
    id_columns: list[str] | None = None,
    student_columns: list[str] | None = None,
    teacher_columns: list[str] | None = None,
) -> TabularTask:
    """Read and validate the CSVs; without ``student_columns`` the student gets the test file's columns."""
    ids = list(id_columns or [])
    train_df = read_table(train)
    if target not in train_df.columns:
        raise DataError(f"{train}: target column '{target}' not found; columns are: {_shown(list(train_df))}")
    _check_numeric(train_df, Path(train), set())
    numeric_train = {c for c in train_df if pd.api.types.is_numeric_dtype(train_df[c])}
    test_df = None if test is None else read_table(test, set(train_df.columns) - numeric_train)
    y = train_df.pop(target)
    if y.isna().any():
        raise DataError(f"{train}: target '{target}' has {int(y.isna().sum())} missing values; drop those rows")
    if y.nunique() < 2:
        raise DataError(f"{train}: target '{target}' has a single class ({y.iloc[0]!r}); need at least two")
    test_ids = None
    if test_df is not None:
        test_df = test_df.drop(columns=[target], errors="ignore")
        extra = [c for c in test_df.columns if c not in train_df.columns and c not in ids]
        if extra:
            raise DataError(f"{test}: columns not in the train file: {_shown(extra)}; drop them or add them to train")
        missing_ids = [c for c in ids if c not in test_df.columns]
        if missing_ids:
            raise DataError(f"{test}: id column(s) {_shown(missing_ids)} not found; check --id")
        _check_numeric(test_df, Path(test), numeric_train)
        test_ids = test_df[ids] if ids else pd.DataFrame({"row": range(len(test_df))})
    feature_cols = [c for c in train_df.columns if c not in ids]
    if student_columns is None:
        if test_df is None:
            raise DataError("no --test file and no --student-columns: give one so the student's columns are known")
        student_columns = [c for c in test_df.columns if c not in ids]
    teacher_columns = list(teacher_columns or feature_cols)
    for what, cols in (("student", student_columns), ("teacher", teacher_columns)):
        unknown = [c for c in cols if c not in train_df.columns]
        if unknown:
            raise DataError(f"{what} columns not in the train file: {_shown(unknown)}")
        if not cols:
            raise DataError(f"no {what} columns: the test file has only id columns; check --id")
    if test_df is not None:
        absent = [c for c in student_columns if c not in test_df.columns]
        if absent:
            raise DataError(f"{test}: student columns missing from the test file: {_shown(absent)}")
    features = list(dict.fromkeys(teacher_columns + list(student_columns)))
    return TabularTask(
        X=train_df[features], y=y, teacher_columns=teacher_columns, student_columns=list(student_columns),
        test=None if test_df is None else test_df[list(student_columns)], test_ids=test_ids, id_columns=ids,
    )
