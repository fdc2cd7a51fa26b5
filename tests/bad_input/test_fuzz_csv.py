"""Generated malformed CSVs through the real commands: tabular tables (`kdkit tabular fit`), text files (`kdkit
train` on data.name text_files) and inputs to predict (`kdkit predict`).

Each example writes a valid table, optionally with blank lines (which pandas and the csv module skip, so line
numbers must be counted from the file, not from row positions), then breaks one row in one way. The command
must exit with code 2 and one 'error:' line that names the file and the line of the broken row (or the class),
with no traceback, and must leave the run directory it was given exactly as it was.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hostile import assert_refused, cli, fingerprint, fuzz_settings, write_config
from hypothesis import given
from hypothesis import strategies as st

CORRUPTIONS = ["ragged_long", "ragged_short", "infinite", "no_features", "latin1", "nul", "not_a_number"]


def _table(rng: np.random.Generator, n: int, labels: list[str]) -> list[list[str]]:
    rows = [["a", "b", "c", "y"]]
    for i in range(n):
        rows.append([f"{rng.normal():.3f}", f"{rng.normal():.3f}", f"{rng.normal():.3f}", labels[i % len(labels)]])
    return rows


def _render(rows: list[list[str]], blank_after: set[int], broken: int, how: str) -> tuple[bytes, int]:
    """CSV bytes with row `broken` (index into rows) corrupted as `how`, and the file line of that row."""
    out, line, target_line = [], 0, -1
    for i, row in enumerate(rows):
        fields = list(row)
        if i == broken:
            if how == "ragged_long":
                fields.append("9")
            elif how == "ragged_short":
                fields = fields[:-1]
            elif how == "infinite":
                fields[1] = "inf"
            elif how == "no_features":  # every feature empty; a train row keeps its label (last column)
                fields = [""] * (len(fields) - 1) + [fields[-1] if rows[0][-1] == "y" else ""]
            elif how == "not_a_number":
                fields[2] = "abc"
        text = ",".join(fields).encode()
        if i == broken and how == "latin1":
            text = text.replace(b",", b"\xe9,", 1)
        if i == broken and how == "nul":
            text = text.replace(b",", b"\x00,", 1)
        out.append(text)
        line += 1
        if i == broken:
            target_line = line
        if i in blank_after:
            out.append(b"")
            line += 1
    return b"\n".join(out) + b"\n", target_line


NEEDLE = {"ragged_long": "field", "ragged_short": "field", "infinite": "infinite", "no_features": "no value",
          "latin1": "not UTF-8", "nul": "binary", "not_a_number": "non-numeric"}


@pytest.mark.fuzz_long
@fuzz_settings(examples=60)
@given(n=st.integers(8, 30), seed=st.integers(0, 2**16), how=st.sampled_from(CORRUPTIONS), data=st.data(),
       in_test=st.booleans())
def test_tabular_fit_names_the_broken_line(n, seed, how, data, in_test):
    rng = np.random.default_rng(seed)
    rows = _table(rng, n, ["p", "q"])
    test_rows = [r[:2] for r in _table(rng, 6, ["p"])]
    in_test = in_test and how not in ("not_a_number",)  # a test column's type is the train column's
    target = test_rows if in_test else rows
    broken = data.draw(st.integers(1, len(target) - 1))
    blanks = set(data.draw(st.lists(st.integers(0, len(target) - 1), max_size=3)))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bad, line = _render(target, blanks, broken, how)
        good = b"\n".join(",".join(r).encode() for r in (rows if in_test else test_rows)) + b"\n"
        (tmp / "train.csv").write_bytes(good if in_test else bad)
        (tmp / "test.csv").write_bytes(bad if in_test else good)
        run = tmp / "run"
        run.mkdir()
        (run / "keep.txt").write_text("an earlier result")
        before = fingerprint(run)
        out = cli(["tabular", "fit", "--train", tmp / "train.csv", "--test", tmp / "test.csv", "--target", "y",
                   "--teacher", "logreg", "--student", "logreg", "--n-splits", "2", "--run-dir", run])
        shown = "test.csv" if in_test else "train.csv"
        assert_refused(out, shown, f"line {line}", NEEDLE[how])
        assert fingerprint(run) == before


@pytest.mark.fuzz_long
@fuzz_settings(examples=20)
@given(n=st.integers(6, 20), splits=st.integers(2, 5), single=st.booleans())
def test_tabular_fit_refuses_degenerate_classes(n, splits, single):
    rng = np.random.default_rng(n)
    labels = ["p"] if single else ["p", "q"]
    rows = _table(rng, max(n, 2 * splits), labels)
    if not single:
        rows.append(["0.1", "0.2", "0.3", "rare"])  # one row: fewer than any number of folds >= 2
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "train.csv").write_text("\n".join(",".join(r) for r in rows) + "\n")
        (tmp / "test.csv").write_text("a,b\n1,2\n")
        out = cli(["tabular", "fit", "--train", tmp / "train.csv", "--test", tmp / "test.csv", "--target", "y",
                   "--teacher", "logreg", "--student", "logreg", "--n-splits", str(splits), "--run-dir", tmp / "run"])
        assert_refused(out, "train.csv", "single class" if single else "class 'rare'")
        assert not (tmp / "run").exists()


TEXT_CORRUPTIONS = ["ragged_long", "ragged_short", "latin1", "nul"]


@pytest.mark.fuzz_long
@fuzz_settings(examples=25)
@given(n=st.integers(6, 20), how=st.sampled_from(TEXT_CORRUPTIONS), data=st.data())
def test_text_files_name_the_broken_line(n, how, data):
    rows = [["text", "label"]] + [[f"good film {i}" if i % 2 else f"bad film {i}", "pos" if i % 2 else "neg"]
                                  for i in range(n)]
    broken = data.draw(st.integers(1, n))
    blanks = set(data.draw(st.lists(st.integers(0, n), max_size=2)))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bad, line = _render(rows, blanks, broken, how)
        (tmp / "train.csv").write_bytes(bad)
        (tmp / "test.csv").write_text("\n".join(",".join(r) for r in rows) + "\n")
        config = write_config(tmp / "c.yaml", {
            "data": {"name": "text_files", "train_file": str(tmp / "train.csv"), "test_file": str(tmp / "test.csv")},
            "teacher": {"name": "text_bow", "params": {}}, "student": {"name": "text_bow", "params": {}}})
        assert_refused(cli(["train", config]), "train.csv", f"line {line}")
        assert not (tmp / "run").exists()


@pytest.mark.fuzz_long
@fuzz_settings(examples=25)
@given(rows=st.integers(1, 6), how=st.sampled_from(["ragged", "nan", "inf", "word", "latin1"]), data=st.data())
def test_predict_inputs_name_the_broken_row(tiny_run, rows, how, data):
    values = [["0.5"] * 64 for _ in range(rows)]
    broken = data.draw(st.integers(0, rows - 1))
    if how == "ragged":
        values[broken] = values[broken][:-1]
    else:
        bad = {"nan": "nan", "inf": "-inf", "word": "x", "latin1": "\xe9"}[how]
        values[broken][data.draw(st.integers(0, 63))] = bad
    text = "\n".join(",".join(v) for v in values) + "\n"
    before = fingerprint(tiny_run)
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "inputs.csv"
        inputs.write_bytes(text.encode("latin-1"))
        line = assert_refused(cli(["predict", tiny_run, inputs]), "inputs.csv")
    if how == "ragged" and broken == 0 and rows > 1:
        assert "line 2" in line  # the first row sets the width; the next one is the one that differs
    elif how != "ragged" or broken > 0:
        assert f"{'row' if how in ('nan', 'inf') else 'line'} {broken + 1}" in line
    assert fingerprint(tiny_run) == before
