"""Reading a user's text file (config, CSV, JSONL, a list of texts) as UTF-8, or saying in one line why not.

Python's own decoding error is a traceback that names a byte offset; what a user can act on is the file, the
line and what to do (save it as UTF-8). A file with NUL bytes is not text at all (an image, an archive, a
spreadsheet saved in its binary format) and is named as such. Ragged CSV rows, which the csv module and pandas
pad or shift silently, are found here too and named by their line, and so is a file separated by semicolons or tabs
(a spreadsheet's export in many locales), which would otherwise read as one column or as ragged rows.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from kdkit.errors import DataError, KdkitError

_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_OTHER_SEPARATORS = {";": "';'", "\t": "tab", "|": "'|'"}
_DECIMAL_COMMA = re.compile(r"[-+]?\d+,\d+")


def read_text(path: str | Path, error: type[KdkitError] = DataError) -> str:
    """The file's text (UTF-8, a byte-order mark dropped); `error` with file, line and fix when it is not text."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{path} is a directory; give a file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: file not found; check the path") from None
    except OSError as err:
        raise error(f"cannot read {path}: {err.strerror or err}") from None
    if data.startswith(_UTF16_BOMS):
        raise error(f"{path} is UTF-16 text; save it as UTF-8")
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise error(f"{path} is a binary file, not text (a NUL byte at line {line}); give a UTF-8 text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise error(f"{path} is not UTF-8 (byte 0x{data[err.start]:02x} at line {line}); save it as UTF-8 (e.g. "
                    f"iconv -f latin1 -t utf-8)") from None


def check_csv_rows(text: str, path: str | Path, error: type[KdkitError] = DataError) -> None:
    """Every non-blank record of a CSV has as many fields as its header; else `error` naming the first bad line."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        return
    if len(header) == 1:
        check_separator(text, path, error)
    for record in reader:
        if record and len(record) != len(header):
            raise error(f"{path}: line {reader.line_num} has {len(record)} field(s), the header has {len(header)}; "
                        "fix that row (quote values that hold commas)")


def check_separator(text: str, path: str | Path, error: type[KdkitError] = DataError) -> None:
    """A header that is one field for ',' but several for ';', tab or '|' (and the first rows agree): the file is
    separated by that character, so `error` says so and how to convert it (with decimal=',' when numbers such as
    1,5 appear), instead of a field count or a missing column that would mislead."""
    lines = [line for line in text.splitlines() if line.strip()][:20]
    if not lines:
        return
    for sep, name in _OTHER_SEPARATORS.items():
        rows = list(csv.reader(lines, delimiter=sep))
        if len(rows[0]) < 2 or any(len(row) != len(rows[0]) for row in rows):
            continue
        commas = any(_DECIMAL_COMMA.fullmatch(cell.strip()) for row in rows[1:] for cell in row)
        decimal = ", decimal=','" if commas else ""
        shown = repr(sep) if sep != "\t" else "'\\t'"
        new = Path(path).with_name(f"{Path(path).stem}-comma.csv")
        raise error(f"{path}: looks {name}-separated (its header splits into {len(rows[0])} columns at {name}, one at "
                    f"','); kdkit reads comma-separated files: convert it, e.g. python -c \"import pandas as pd; "
                    f"pd.read_csv('{path}', sep={shown}{decimal}).to_csv('{new}', index=False)\"")
