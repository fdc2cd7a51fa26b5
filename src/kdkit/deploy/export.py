"""ONNX export of a trained model, checked against PyTorch with ONNX Runtime.

The model is exported with a dynamic batch dimension by PyTorch's ``torch.export``-based ONNX exporter; a model that
``torch.export`` cannot capture (for example one whose forward reads tensor values into Python, as the text models'
input checks do) falls back to the TorchScript-tracing exporter. The file is then loaded in ONNX Runtime and its outputs
compared with PyTorch's on real inputs: an export is only reported as done when they agree, and a graph that does not
read the inputs it was given (a forward whose input handling the tracer turned into constants) is refused. Models that
tokenize raw text inside their forward are exported by :mod:`kdkit.deploy.export_text` instead, as a graph of token ids.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from kdkit.errors import ConfigError, ModelError
from kdkit.io.checkpoint import default_mode


@dataclass
class ExportReport:
    path: Path
    exporter: str  # "dynamo" or "torchscript"
    size_bytes: int
    max_abs_diff: float  # between ONNX Runtime's and PyTorch's outputs on the check inputs
    agreement: float  # share of check inputs whose predicted class is the same
    torch_ms: float  # median latency of one forward at the check batch size, PyTorch (CPU)
    onnx_ms: float  # the same, ONNX Runtime


def _modules() -> tuple:
    try:
        import onnx  # noqa: F401  (the exporters need it)
        import onnxruntime
    except ImportError:
        raise ConfigError("ONNX export needs onnx, onnxscript and onnxruntime: pip install 'kdkit[onnx]'") from None
    return (onnxruntime,)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters print progress, graphs and warnings on stdout, stderr and torch's loggers; the report says
    what matters."""
    loggers = [logging.getLogger(name) for name in ("torch", "torch.onnx", "torch.export", "torch.fx", "onnxscript")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.CRITICAL)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _export(model: nn.Module, examples: dict[str, Tensor], path: Path, dynamic: dict[str, dict[int, str]],
            max_sizes: dict[str, int]) -> str:
    """Writes `path` with inputs named as `examples`' keys and dynamic axes `dynamic` (input -> {axis: dimension
    name}); returns which exporter succeeded."""
    if "kdkit_qat_backend" in getattr(model, "meta", {}):
        raise ModelError("ONNX export of a quantization-aware student is not supported (its fake-quantization ops "
                         "have no ONNX form here); export a float student, or use convert_quantized for int8 CPU use")
    names, args = list(examples), tuple(examples.values())
    errors = []
    with _quiet():
        try:
            dims = {d: torch.export.Dim(d, min=1, max=max_sizes[d]) if d in max_sizes else torch.export.Dim(d, min=1)
                    for axes in dynamic.values() for d in axes.values()}  # one Dim per name, shared by the inputs
            shapes = tuple({axis: dims[d] for axis, d in dynamic.get(name, {}).items()} for name in names)
            torch.onnx.export(model, args, str(path), dynamo=True, input_names=names,
                              output_names=["logits"], dynamic_shapes=shapes, verbose=False)
            _inline_weights(path)
            return "dynamo"
        except Exception as err:  # any capture failure: try the tracing exporter before giving up
            errors.append(str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)
        try:
            torch.onnx.export(model, args, str(path), dynamo=False, input_names=names, output_names=["logits"],
                              dynamic_axes={**dynamic, "logits": {0: "batch"}})
            return "torchscript"
        except Exception as err:
            errors.append(str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)
    raise ModelError(f"cannot export {type(model).__name__} to ONNX: {_plain(errors[0])} "
                     f"(tracing: {_plain(errors[-1])})")


def _inline_weights(path: Path) -> None:
    """The dynamo exporter may write the weights to a side file `<name>.data`; one self-contained file is what can be
    moved into place atomically and shipped."""
    import onnx

    side = Path(f"{path}.data")
    if side.exists():
        onnx.save_model(onnx.load(str(path)), str(path), save_as_external_data=False)
        side.unlink()


def _plain(message: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", message)  # the exporters colour their messages


def median_ms(run: Callable[[], object], repeats: int = 20) -> float:
    """Median wall time in milliseconds of `run()`, after one warm-up call."""
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def add_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Key-value strings in the ONNX file's metadata_props (ONNX Runtime: `get_modelmeta().custom_metadata_map`),
    so the file alone says what its outputs mean and how to prepare its inputs."""
    import onnx

    model = onnx.load(str(path))
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save_model(model, str(path), save_as_external_data=False)


def export_onnx(model: nn.Module, inputs: Tensor, path: str | Path, atol: float = 1e-4,
                metadata: dict[str, str] | None = None) -> ExportReport:
    """Export `model` (moved to the CPU, eval mode, unchanged otherwise) to `path`, written atomically, and check it
    on `inputs` (a batch of real inputs; its first two rows are also the export example); `metadata` is stored in
    the file (see add_metadata). The graph's input is named "input" and its batch dimension is dynamic. Models that
    run packed sequences (text_bilstm, text_gru) are exported in their unpacked form
    (:mod:`kdkit.models.unpacked`), checked against the model itself.

    ModelError when the export fails or ONNX Runtime's logits differ from PyTorch's by more than `atol`."""
    from kdkit.models.raw_text import is_raw_text

    if not isinstance(inputs, Tensor) or inputs.dim() == 0 or len(inputs) < 1:
        raise ConfigError("export_onnx needs `inputs` as a non-empty batch tensor of real inputs")
    if is_raw_text(inputs) and _reads_raw_text(model):
        raise ModelError(f"{type(model).__name__} tokenizes raw text inside its forward, which ONNX cannot hold; "
                         "export it with kdkit.deploy.export_text.export_raw_text (as `kdkit export` does), whose "
                         "graph takes token ids")
    dynamic = {"input": {0: "batch"}}
    return export_checked(model, {"input": inputs}, path, atol=atol, metadata=metadata, dynamic=dynamic)


def _reads_raw_text(model: nn.Module) -> bool:
    from kdkit.models.hf_text import HFTextModel
    from kdkit.models.raw_text import WordTokenized

    return isinstance(model, (WordTokenized, HFTextModel))


def _temporary_beside(path: Path) -> Path:
    """A new temporary file in `path`'s folder (so the final rename stays on one file system)."""
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; give a file name such as {path / 'model.onnx'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".onnx", dir=path.parent)
    except OSError as err:
        raise ConfigError(f"cannot write {path}: {err.strerror or err}; choose another output path") from None
    os.close(fd)
    return Path(tmp_name)


def _compared(session: Any, model: nn.Module, feed: dict[str, np.ndarray], expected: np.ndarray,
              atol: float) -> tuple[np.ndarray, float]:
    """ONNX Runtime's outputs for `feed` and their largest difference from `expected`; ModelError when the graph
    ignores an input, cannot run, or disagrees."""
    graph_inputs = [i.name for i in session.get_inputs()]
    if sorted(graph_inputs) != sorted(feed):  # e.g. an input folded into constants by the tracer
        raise ModelError(f"the exported {type(model).__name__} reads inputs {graph_inputs or 'none'} instead of "
                         f"{list(feed)}, so its outputs would not follow its input; not exported")
    try:
        got = session.run(None, feed)[0]
    except Exception as err:  # e.g. a batch size the exported graph fixed
        raise ModelError(f"ONNX Runtime cannot run the exported {type(model).__name__}: "
                         f"{_plain(str(err).strip().splitlines()[0])}") from None
    if got.shape != expected.shape:
        raise ModelError(f"the ONNX model returns shape {got.shape} but PyTorch {expected.shape}; not exported")
    diff = float(np.abs(got - expected).max())
    if not diff <= atol:
        raise ModelError(f"ONNX Runtime's outputs differ from PyTorch's by up to {diff:.2e} (> {atol}); not "
                         "exported")
    return got, diff


def export_checked(
    model: nn.Module, inputs: dict[str, Tensor], path: str | Path, *, reference: Tensor | None = None,
    dynamic: dict[str, dict[int, str]], max_sizes: dict[str, int] | None = None, atol: float = 1e-4,
    metadata: dict[str, str] | None = None,
) -> ExportReport:
    """The export behind export_onnx, for graphs with several named inputs: `inputs` maps each input name to a
    batch of real inputs (rows aligned across inputs), `dynamic` each input's dynamic axes ({axis: dimension name};
    a name shared by inputs is one dimension) and `max_sizes` upper bounds of named dimensions. ONNX Runtime's
    logits are compared with `reference` when given (e.g. the PyTorch model that reads raw text, on the same rows),
    else with `model(*inputs)`; latencies are both taken on `inputs`. The file reaches `path` only once they agree."""
    (onnxruntime,) = _modules()
    path = Path(path)
    tmp = _temporary_beside(path)
    was_training = model.training
    first = next(iter(inputs.values()))
    device = next(iter(model.parameters()), first).device
    model = model.cpu().eval()
    inputs = {name: x.cpu() for name, x in inputs.items()}
    args = tuple(inputs.values())
    try:
        from kdkit.models.unpacked import onnx_form

        exported = onnx_form(model)
        examples = {name: x[:2] for name, x in inputs.items()}  # 2 rows: torch.export fixes a dimension of size 1
        exporter = _export(exported, examples, tmp, dynamic, max_sizes or {})
        if metadata:
            add_metadata(tmp, metadata)
        session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        feed = {name: x.numpy() for name, x in inputs.items()}
        with torch.no_grad():
            expected = (model(*args) if reference is None else reference.detach().cpu()).numpy()
        got, diff = _compared(session, model, feed, expected, atol)
        with torch.no_grad():
            torch_ms = median_ms(lambda: model(*args))
        onnx_ms = median_ms(lambda: session.run(None, feed))
        default_mode(tmp)  # shipped like every other file of the run: 0644 under the usual umask, not 0600
        os.replace(tmp, path)  # only a checked model reaches the final name
    finally:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.data").unlink(missing_ok=True)
        model.to(device).train(was_training)
    agreement = float((got.argmax(-1) == expected.argmax(-1)).mean())
    return ExportReport(path, exporter, path.stat().st_size, diff, agreement, torch_ms, onnx_ms)
