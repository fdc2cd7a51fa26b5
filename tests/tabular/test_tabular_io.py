"""Bad CSV input: one clear DataError line each (the CLI turns them into exit code 2)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from kdkit.errors import DataError
from kdkit.families.tabular.io import load_task

GOOD_TRAIN = "id,a,b,lab,Y\n" + "".join(f"{i},{i % 7},{i % 3},{i % 5},{i % 2}\n" for i in range(20))
GOOD_TEST = "id,a,b\n100,1,2\n101,3,4\n"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_input_gives_test_columns_to_the_student(tmp_path: Path) -> None:
    task = load_task(_write(tmp_path, "train.csv", GOOD_TRAIN), "Y", _write(tmp_path, "test.csv", GOOD_TEST), ["id"])
    assert task.student_columns == ["a", "b"]
    assert task.teacher_columns == ["a", "b", "lab"]
    assert list(task.test_ids["id"]) == [100, 101]


BAD = {
    "target missing": (GOOD_TRAIN.replace(",Y\n", ",Z\n", 1), GOOD_TEST, "target column 'Y' not found"),
    "test column not in train": (GOOD_TRAIN, "id,a,b,extra\n1,2,3,4\n", "columns not in the train file: extra"),
    "non-numeric value": (GOOD_TRAIN.replace("\n5,5,2,0,1\n", "\n5,five,2,0,1\n"), GOOD_TEST,
                          "column 'a' is numeric but line 7 has the non-numeric value 'five'"),
    "non-numeric in test": (GOOD_TRAIN, "id,a,b\n1,oops,2\n", "column 'a' is numeric but line 2"),
    "empty train": ("", GOOD_TEST, "file is empty"),
    "header only": ("id,a,b,lab,Y\n", GOOD_TEST, "no data rows"),
    "single class": (GOOD_TRAIN.replace(",1\n", ",0\n"), GOOD_TEST, "single class"),
    "duplicated columns": (GOOD_TRAIN.replace("id,a,b,lab,Y", "id,a,a,lab,Y"), GOOD_TEST, "duplicated column names a"),
    "duplicated in test": (GOOD_TRAIN, "id,a,a\n1,2,3\n", "duplicated column names a"),
    "missing target values": (GOOD_TRAIN.replace(",1\n", ",\n", 1), GOOD_TEST, "missing values"),
    "semicolons, decimal points": (GOOD_TRAIN.replace(",", ";"), GOOD_TEST,
                                   "looks ';'-separated (its header splits into 5 columns at ';', one at ',')"),
    "semicolons, decimal commas": (GOOD_TRAIN.replace(",", ";").replace(";3;", ";3,5;"), GOOD_TEST,
                                   "sep=';', decimal=','"),
    "tabs": (GOOD_TRAIN, GOOD_TEST.replace(",", "\t"), "test.csv: looks tab-separated"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_clear_line(tmp_path: Path, case: str) -> None:
    train, test, message = BAD[case]
    with pytest.raises(DataError) as info:
        load_task(_write(tmp_path, "train.csv", train), "Y", _write(tmp_path, "test.csv", test), ["id"])
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_categorical_text_column_is_not_an_error(tmp_path: Path) -> None:
    train = "a,color,Y\n" + "".join(f"{i},{'red' if i % 3 else 'blue'},{i % 2}\n" for i in range(12))
    task = load_task(_write(tmp_path, "train.csv", train), "Y", student_columns=["a"])
    assert not pd.api.types.is_numeric_dtype(task.X["color"]) and task.test is None
