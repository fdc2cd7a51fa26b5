"""New inputs for a trained model, read the way its run's data was: `kdkit predict RUN_DIR INPUTS`.

What is natural per kind of run (models/meta.json says which):

- any run: a ``.npy`` array of model inputs, already preprocessed, shaped (N, *input_shape) (one sample may
  omit N);
- tensor runs (MNIST-1D, digits, Fashion-MNIST, your own tensors): also a ``.csv`` with one sample per row,
  its values flattened in C order (a header row is skipped);
- image runs (an image folder): an image file, or a folder of them (sub-folders included), decoded, resized and
  normalised exactly as at training time;
- text runs: a ``.txt`` file with one text per line, or a ``.csv`` / ``.jsonl`` whose text is in the run's own
  text column (``data.text_column``, ``text`` by default; another with ``text_column``), turned into word ids by the
  run's vocabulary; raw-text runs (``data.raw_text``) into the texts' UTF-8 bytes, which each model tokenizes
  itself (an hf: model with its tokenizer, a word model with the vocabulary), so they take no ``.npy``.

Each input keeps a name (file name, or row number), so predictions can be matched to what was given.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from kdkit.errors import DataError
from kdkit.io.textfile import read_text


def read_inputs(path: str | Path, meta: dict[str, Any], vocab: Any = None,
                text_column: str = "text") -> tuple[list[str], Tensor, list[Any]]:
    """(names, model inputs, raw items) for the file or folder at `path`; raw items are the texts of a text run
    (to show per-word tags), else the names. A text run's .csv / .jsonl is read from `text_column`."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"inputs not found: {path}; give a .npy, .csv, a text file or a folder of images")
    raw_text = bool((meta.get("preprocessing") or {}).get("raw_text"))
    if path.suffix == ".npy":
        if raw_text:  # ids of one tokenizer would reach a model with another: give the texts
            raise DataError(f"{path}: this run's models read raw text, each through its own tokenizer, so they take "
                            "texts, not arrays; give a .txt (one text per line), .csv or .jsonl")
        return _npy(path, meta)
    kind = meta["kind"]
    if kind == "image":
        return _images(path, meta)
    if kind == "text":
        return _texts(path, meta, vocab, text_column)
    if path.suffix == ".csv":
        return _csv_numbers(path, meta)
    raise DataError(f"{path}: this run's inputs are tensors of shape {tuple(meta['input_shape'])}; give a .npy "
                    "array or a .csv with one flattened sample per row")


def _shaped(values: np.ndarray, meta: dict[str, Any], source: Path, unit: str = "sample") -> Tensor:
    shape = tuple(meta["input_shape"])
    size = int(np.prod(shape))
    if values.dtype.kind not in "biuf":
        raise DataError(f"{source} holds {values.dtype} values, not numbers; give a numeric array (float32)")
    if values.size == 0:
        raise DataError(f"{source} holds no inputs (shape {values.shape}); give at least one sample")
    if values.shape == shape:
        values = values[None]
    finite = np.isfinite(values.reshape(len(values), -1)).all(axis=1) if values.ndim > 1 else np.isfinite(values)
    if not finite.all():  # a NaN input gives a NaN prediction, printed as if it were one
        first = int(np.argmin(finite))
        raise DataError(f"{source}: {unit} {first + 1} holds NaN or infinite values ({int((~finite).sum())} "
                        f"{unit}(s) in all); replace them with finite numbers")
    if values.ndim < 1 or values.size % size or (values.ndim > 1 and int(np.prod(values.shape[1:])) != size):
        raise DataError(f"{source}: inputs of shape {values.shape} do not fit the model's input shape {shape}; "
                        f"give (N, {', '.join(map(str, shape))}) or rows of {size} values")
    dtype = torch.long if meta.get("input_dtype", "float32").startswith("int") else torch.float32
    return torch.as_tensor(np.ascontiguousarray(values).reshape(-1, *shape)).to(dtype)


def _npy(path: Path, meta: dict[str, Any]) -> tuple[list[str], Tensor, list[Any]]:
    try:
        values = np.load(path, allow_pickle=False)
    except ValueError as err:
        why = "it holds Python objects, which kdkit does not unpickle" if "pickle" in str(err) else str(err)
        raise DataError(f"cannot read {path} as a .npy array ({why}); save a plain numeric array with "
                        "numpy.save") from None
    except (EOFError, OSError) as err:  # empty or truncated file
        raise DataError(f"cannot read {path} as a .npy array ({err or 'the file is empty'}); save it again with "
                        "numpy.save") from None
    x = _shaped(values, meta, path)
    names = [f"{path.name}[{i}]" for i in range(len(x))]
    return names, x, names


def _csv_numbers(path: Path, meta: dict[str, Any]) -> tuple[list[str], Tensor, list[Any]]:
    lines = [(number, r) for number, r in enumerate(csv.reader(read_text(path).splitlines()), start=1) if r]
    if lines and not any(_numeric([v]) for v in lines[0][1]):
        lines = lines[1:]  # a header: names only (a first row with a typo among numbers is a row, and refused)
    for number, r in lines:
        if len(r) != len(lines[0][1]):
            raise DataError(f"{path}: line {number} has {len(r)} values, line {lines[0][0]} has {len(lines[0][1])}; "
                            "give every sample the same number of values")
        if not _numeric(r):
            bad = next(v for v in r if not _numeric([v]))
            raise DataError(f"{path}: line {number} holds {bad!r}, not a number; every row after the header must "
                            "hold numbers only")
    values = np.asarray([[float(v) for v in r] for _, r in lines], dtype=np.float32)
    if not len(values):
        raise DataError(f"{path} has no rows of inputs")
    x = _shaped(values, meta, path, unit="row")
    names = [f"row {i + 1}" for i in range(len(x))]
    return names, x, names


def _numeric(row: list[str]) -> bool:
    try:
        [float(v) for v in row]
    except ValueError:
        return False
    return True


def _images(path: Path, meta: dict[str, Any]) -> tuple[list[str], Tensor, list[Any]]:
    from kdkit.data.image_folder import IMAGE_EXTENSIONS, decode

    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
                                                 and not any(part.startswith(".") for part in p.parts))
    if not files:
        raise DataError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {path}")
    pre = meta["preprocessing"]
    mean = torch.tensor(pre["mean"], dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(pre["std"], dtype=torch.float32).view(-1, 1, 1)
    batch = []
    for f in files:
        try:
            arr = decode(f, tuple(pre["image_size"]), pre["channels"])
        except Exception as err:  # PIL raises many types for unreadable files; one line names the file
            raise DataError(f"cannot read image {f}: {err}") from None
        x = torch.tensor(arr).permute(2, 0, 1).float() * pre["scale"]
        batch.append((x - mean) / std)
    names = [str(f.relative_to(path)) if path.is_dir() else f.name for f in files]
    return names, torch.stack(batch), names


def _texts(path: Path, meta: dict[str, Any], vocab: Any, column: str) -> tuple[list[str], Tensor, list[Any]]:
    from kdkit.data.text_files import read_texts

    texts = read_texts(path, column, hint="give the texts' column with --text-column (Python: read(path, "
                                         "text_column=...))")
    pre = meta.get("preprocessing") or {}
    if pre.get("raw_text"):
        from kdkit.models.raw_text import encode_texts

        x = encode_texts(texts, int(pre["max_bytes"]))
    else:
        x = vocab.encode(texts)
    return [f"line {i + 1}" for i in range(len(texts))], x, list(texts)
