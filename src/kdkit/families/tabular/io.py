"""Load the train/test CSVs and refuse bad input with one clear line (``DataError``, exit code 2 in the CLI).

Checks: file missing, a directory, not UTF-8 or binary, empty, ragged rows (a row with more or fewer fields than
the header), duplicated column names, a row with no value at all (or none in any feature column), an infinite
number, target missing / with missing values / a single class / a class with fewer rows than the folds, test
columns that the train table lacks, id columns missing from the test file, and a non-numeric value in a numeric
column. Every message names the file and, where there is one, the line and column. A train column counts as
numeric when at least half of its non-empty cells parse as numbers, a test column when it is numeric in the train
file; the first cell that does not parse is reported with its line number. Other text columns are categorical.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kdkit.errors import DataError
from kdkit.io.textfile import check_csv_rows, read_text


def _shown(names: list) -> str:
    return ", ".join(map(str, names[:6])) + (f" ... ({len(names)} in all)" if len(names) > 6 else "")


def read_table(path: Path | str, text_columns: set[str] | None = None) -> pd.DataFrame:
    """Read one CSV; empty files, header-only files and duplicated column names are errors.

    ``text_columns`` are read as strings (categories of the train file stay categories in the test file
    even when every test value happens to look like a number).
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a directory; give a CSV file")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    text = read_text(path)  # UTF-8 (an Excel byte-order mark dropped), not binary; else one line naming the line
    header = next(csv.reader(io.StringIO(text, newline="")), None)
    if not header or all(not h.strip() for h in header):
        raise DataError(f"{path}: file is empty; expected a CSV with a header row")
    dupes = [name for name, n in Counter(h.strip() for h in header).items() if n > 1]
    if dupes:
        raise DataError(f"{path}: duplicated column names {_shown(dupes)}; rename them so each is unique")
    check_csv_rows(text, path)  # a short row would be padded with missing values, a long one shift its values
    try:
        dtype = {c: str for c in header if c.strip() in (text_columns or set())}
        frame = pd.read_csv(io.StringIO(text, newline=""), low_memory=False, dtype=dtype or None)
    except pd.errors.ParserError as err:
        first = str(err).strip().splitlines()[0]
        raise DataError(f"{path}: cannot parse as CSV ({first})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise DataError(f"{path}: has a header but no data rows")
    lines = _record_lines(text)
    frame.attrs["lines"] = lines if len(lines) == len(frame) else None
    empty = frame.isna().all(axis=1).to_numpy()
    if empty.any():
        raise DataError(f"{path}: line {line_of(frame, int(empty.argmax()))} has no value at all; delete that row")
    check_finite_cells(frame, path)
    return frame


def check_finite_cells(frame: pd.DataFrame, path: Path) -> None:
    """No infinite number in a numeric column ('inf', or a value beyond float range such as 1e400): no model can
    use it, and scaled or binned it silently turns into NaN or an extreme bin. An empty cell (NaN) stays allowed."""
    for col in frame.columns:
        values = frame[col]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            infinite = np.isinf(values.to_numpy(dtype=float, na_value=np.nan))
            if infinite.any():
                row = int(infinite.argmax())
                raise DataError(f"{path}: column '{col}' line {line_of(frame, row)} holds an infinite value "
                                f"({values.iloc[row]}; {int(infinite.sum())} in the column); replace it by a finite "
                                "number, or leave the cell empty for a missing value")


def _record_lines(text: str) -> list[int]:
    """The line number of every non-blank data record (blank lines are skipped by pandas too)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader, None)
    lines, start = [], reader.line_num + 1
    for record in reader:
        if record:
            lines.append(start)
        start = reader.line_num + 1
    return lines


def line_of(frame: pd.DataFrame, row: int) -> int:
    """The file line of the frame's row `row` (position), counting the header as line 1."""
    lines = frame.attrs.get("lines")
    return lines[row] if lines and row < len(lines) else row + 2


def check_numeric(frame: pd.DataFrame, path: Path, numeric_elsewhere: set[str], columns: list | None = None) -> None:
    """Numbers stored as text become numbers; a column that is numeric (in `numeric_elsewhere`, or mostly numbers)
    but holds text is refused naming its first such line. Only `columns` are looked at, when given."""
    for col in frame.columns if columns is None else columns:
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
                f"{path}: column '{col}' is numeric but line {line_of(frame, row)} has the non-numeric value "
                f"{values.iloc[row]!r}; fix it or leave the cell empty for a missing value"
            )


def _plain(value: object) -> object:
    """A numpy scalar as the Python value it holds (so messages show 2, not np.int64(2))."""
    return value.item() if hasattr(value, "item") else value


def _check_folds(y: pd.Series, n_splits: int, path: Path, target: str) -> None:
    if n_splits < 2:
        raise DataError(f"--n-splits must be at least 2 (out-of-fold teacher probabilities need two folds), got "
                        f"{n_splits}")
    counts = y.value_counts()
    if counts.min() < n_splits:
        rare = _plain(counts.idxmin())
        raise DataError(f"{path}: class {rare!r} of target '{target}' has {int(counts.min())} row(s), fewer than the "
                        f"{n_splits} folds of --n-splits (each fold needs one); lower --n-splits, add rows or merge "
                        "rare classes")


def _check_has_features(frame: pd.DataFrame, columns: list, path: Path) -> None:
    """A row whose every feature is missing carries nothing to learn from or predict with: refused by line."""
    if not columns:
        return
    empty = frame[columns].isna().all(axis=1).to_numpy()
    if empty.any():
        raise DataError(f"{path}: line {line_of(frame, int(empty.argmax()))} has no value in any feature column "
                        f"({int(empty.sum())} such row(s)); fill them in or delete those rows")


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
    test_y: pd.Series | None = None  # the test file's target, when it has one
    test_features: pd.DataFrame | None = None  # the test file's teacher and student columns, when it has them all


def _target(train_df: pd.DataFrame, train: Path, target: str, n_splits: int | None) -> pd.Series:
    """The target column, taken out of `train_df`: complete, with two classes or more (each in every fold)."""
    y = train_df.pop(target)
    if y.isna().any():
        raise DataError(f"{train}: target '{target}' has {int(y.isna().sum())} missing values; drop those rows")
    if y.nunique() < 2:
        raise DataError(f"{train}: target '{target}' has a single class ({_plain(y.iloc[0])!r}); a classifier "
                        "needs rows of at least two classes")
    if n_splits is not None:
        _check_folds(y, n_splits, train, target)
    return y


def _test_labels_and_ids(test_df: pd.DataFrame, test: Path, target: str, train_df: pd.DataFrame, ids: list[str],
                         numeric_train: set[str]) -> tuple[pd.DataFrame, pd.Series | None]:
    """The test file's ids and its labels if it has them (taken out of `test_df`), its columns checked against the
    train file's."""
    test_y = test_df.pop(target) if target in test_df.columns else None
    if test_y is not None and test_y.isna().any():
        raise DataError(f"{test}: target '{target}' has {int(test_y.isna().sum())} missing values; drop those rows "
                        "(or the column, for a test file without labels)")
    extra = [c for c in test_df.columns if c not in train_df.columns and c not in ids]
    if extra:
        raise DataError(f"{test}: columns not in the train file: {_shown(extra)}; drop them or add them to train")
    missing_ids = [c for c in ids if c not in test_df.columns]
    if missing_ids:
        raise DataError(f"{test}: id column(s) {_shown(missing_ids)} not found; check --id")
    check_numeric(test_df, test, numeric_train)
    check_finite_cells(test_df, test)
    return (test_df[ids] if ids else pd.DataFrame({"row": range(len(test_df))})), test_y


def load_task(
    train: Path | str,
    target: str,
    test: Path | str | None = None,
    id_columns: list[str] | None = None,
    student_columns: list[str] | None = None,
    teacher_columns: list[str] | None = None,
    n_splits: int | None = None,
) -> TabularTask:
    """Read and validate the CSVs; without ``student_columns`` the student gets the test file's columns. With
    ``n_splits``, every class must have a row in each fold (checked before anything is written)."""
    ids = list(id_columns or [])
    train_df = read_table(train)
    if target not in train_df.columns:
        raise DataError(f"{train}: target column '{target}' not found; columns are: {_shown(list(train_df))}")
    check_numeric(train_df, Path(train), set())
    check_finite_cells(train_df, Path(train))  # again: text cells such as 'inf' have just become numbers
    numeric_train = {c for c in train_df if pd.api.types.is_numeric_dtype(train_df[c])}
    test_df = None if test is None else read_table(test, set(train_df.columns) - numeric_train)
    y = _target(train_df, Path(train), target, n_splits)
    test_ids, test_y = (None, None) if test_df is None else _test_labels_and_ids(test_df, Path(test), target,
                                                                                  train_df, ids, numeric_train)
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
    _check_has_features(train_df, features, Path(train))
    if test_df is not None:
        _check_has_features(test_df, list(student_columns), Path(test))
    complete = test_df is not None and all(c in test_df.columns for c in features)
    return TabularTask(
        X=train_df[features], y=y, teacher_columns=teacher_columns, student_columns=list(student_columns),
        test=None if test_df is None else test_df[list(student_columns)], test_ids=test_ids, id_columns=ids,
        test_y=test_y, test_features=test_df[features] if complete else None,
    )
