"""New inputs for a trained model, read the way its run's data was: `kdkit predict RUN_DIR INPUTS`.

What is natural per kind of run (models/meta.json says which):

- any run: a ``.npy`` array of model inputs, already preprocessed, shaped (N, *input_shape) (one sample may
  omit N);
- tensor runs (MNIST-1D, digits, Fashion-MNIST, your own tensors): also a ``.csv`` with one sample per row,
  its values flattened in C order (a header row is skipped);
- image runs (an image folder): an image file, or a folder of them (sub-folders included), decoded, resized and
  normalised exactly as at training time;
- text runs: a ``.txt`` file with one text per line, or a ``.csv`` / ``.jsonl`` with a ``text`` field, turned
  into word ids by the run's vocabulary.

Each input keeps a name (file name, or row number), so predictions can be matched to what was given.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from kdkit.errors import DataError


def read_inputs(path: str | Path, meta: dict[str, Any], vocab: Any = None) -> tuple[list[str], Tensor, list[Any]]:
    """(names, model inputs, raw items) for the file or folder at `path`; raw items are the texts of a text run
    (to show per-word tags), else the names."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"inputs not found: {path}; give a .npy, .csv, a text file or a folder of images")
    if path.suffix == ".npy":
        return _npy(path, meta)
    kind = meta["kind"]
    if kind == "image":
        return _images(path, meta)
    if kind == "text":
        return _texts(path, vocab)
    if path.suffix == ".csv":
        return _csv_numbers(path, meta)
    raise DataError(f"{path}: this run's inputs are tensors of shape {tuple(meta['input_shape'])}; give a .npy "
                    "array or a .csv with one flattened sample per row")


def _shaped(values: np.ndarray, meta: dict[str, Any], source: Path) -> Tensor:
    shape = tuple(meta["input_shape"])
    size = int(np.prod(shape))
    if values.shape == shape:
        values = values[None]
    if values.ndim < 1 or values.size % size or (values.ndim > 1 and int(np.prod(values.shape[1:])) != size):
        raise DataError(f"{source}: inputs of shape {values.shape} do not fit the model's input shape {shape}; "
                        f"give (N, {', '.join(map(str, shape))}) or rows of {size} values")
    dtype = torch.long if meta.get("input_dtype", "float32").startswith("int") else torch.float32
    return torch.as_tensor(np.ascontiguousarray(values).reshape(-1, *shape)).to(dtype)


def _npy(path: Path, meta: dict[str, Any]) -> tuple[list[str], Tensor, list[Any]]:
    try:
        values = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise DataError(f"cannot read {path} without unpickling ({err}); save a plain numeric array") from None
    x = _shaped(values, meta, path)
    names = [f"{path.name}[{i}]" for i in range(len(x))]
    return names, x, names


def _csv_numbers(path: Path, meta: dict[str, Any]) -> tuple[list[str], Tensor, list[Any]]:
    rows = [r for r in csv.reader(path.read_text().splitlines()) if r]
    if rows and not _numeric(rows[0]):
        rows = rows[1:]  # a header
    try:
        values = np.asarray([[float(v) for v in r] for r in rows], dtype=np.float32)
    except ValueError:
        raise DataError(f"{path}: every row after the header must hold numbers only") from None
    if not len(values):
        raise DataError(f"{path} has no rows of inputs")
    x = _shaped(values, meta, path)
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


def _texts(path: Path, vocab: Any) -> tuple[list[str], Tensor, list[Any]]:
    if path.suffix == ".csv":
        with path.open(newline="") as f:
            texts = [row.get("text") for row in csv.DictReader(f)]
    elif path.suffix == ".jsonl":
        texts = [json.loads(line).get("text") for line in path.read_text().splitlines() if line.strip()]
    else:
        texts = [line for line in path.read_text().splitlines() if line.strip()]
    if any(t is None for t in texts):
        raise DataError(f"{path}: every row needs a 'text' field")
    if not texts:
        raise DataError(f"{path} has no texts (one per line, or a 'text' column)")
    return [f"line {i + 1}" for i in range(len(texts))], vocab.encode(texts), list(texts)
