"""ONNX export: the file runs in ONNX Runtime with any batch size and matches PyTorch; failures are one line and
never leave a half-written or replaced file."""

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
import onnxruntime  # noqa: E402

from kdkit.cli import main  # noqa: E402
from kdkit.deploy.export import export_onnx  # noqa: E402
from kdkit.errors import ConfigError, ModelError  # noqa: E402
from kdkit.families.classification.config import parse_config  # noqa: E402
from kdkit.families.classification.pipeline import run  # noqa: E402
from kdkit.models import build_model  # noqa: E402
from kdkit.models.quantization import prepare_qat  # noqa: E402


def _ort(path, x):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


@pytest.mark.parametrize(("name", "params", "shape", "ids"), [
    ("cnn1d", {"width": 8}, (40,), False),
    ("cnn2d", {"width": 8, "depth": 1}, (1, 8, 8), False),
    ("text_transformer", {"vocab_size": 30, "dim": 16, "heads": 2, "layers": 1}, (12,), True),
    ("text_cnn", {"vocab_size": 30, "width": 8, "pooling": "none"}, (12,), True),
])
def test_exported_model_matches_pytorch_at_any_batch_size(tmp_path, name, params, shape, ids):
    torch.manual_seed(0)
    model = build_model(name, shape, 3, **params).train()
    make = (lambda n: torch.randint(2, 30, (n, *shape))) if ids else (lambda n: torch.randn(n, *shape))
    report = export_onnx(model, make(16), tmp_path / "m.onnx")
    assert report.path.is_file() and report.size_bytes == report.path.stat().st_size
    assert report.max_abs_diff < 1e-4 and report.agreement == 1.0
    assert model.training  # handed back as it came
    for n in (1, 5):  # the batch dimension is dynamic
        x = make(n)
        with torch.no_grad():
            expected = model.eval()(x).numpy()
        assert np.allclose(_ort(report.path, x), expected, atol=1e-4)


def test_a_failed_export_leaves_the_existing_file_alone(tmp_path):
    target = tmp_path / "student.onnx"
    target.write_bytes(b"previous export")
    qat = prepare_qat(build_model("mlp", (8,), 3, hidden=[4]), torch.randn(16, 8))
    with pytest.raises(ModelError, match="quantization-aware") as err:
        export_onnx(qat, torch.randn(16, 8), target)
    assert "\n" not in str(err.value)
    assert target.read_bytes() == b"previous export" and list(tmp_path.iterdir()) == [target]


def test_cli_exports_a_runs_student(tmp_path, capsys):
    run(parse_config({
        "seed": 0, "output_dir": str(tmp_path / "run"), "data": {"name": "digits"},
        "train": {"epochs": 1, "batch_size": 256, "progress": False},
        "teacher": {"name": "cnn2d", "params": {"width": 8, "depth": 1}},
        "student": {"name": "mlp", "params": {"hidden": [16]}},
    }), quick_cost=True)
    with pytest.raises(SystemExit) as done:
        main(["export", str(tmp_path / "run")])
    assert done.value.code in (0, None)
    onnx_file = tmp_path / "run" / "models" / "student_kd.onnx"
    assert onnx_file.is_file()
    assert "same class 100.0%" in capsys.readouterr().out
    umask = os.umask(0)
    os.umask(umask)
    weights = tmp_path / "run" / "models" / "student_kd.safetensors"
    assert stat.S_IMODE(onnx_file.stat().st_mode) == 0o666 & ~umask == stat.S_IMODE(weights.stat().st_mode)
    with pytest.raises(SystemExit) as bad:
        main(["export", str(tmp_path / "run"), "--model", "assistant"])
    assert bad.value.code == 2 and "choose one of" in capsys.readouterr().err


def test_an_unwritable_destination_is_one_line(tmp_path):
    model = build_model("mlp", (8,), 3, hidden=[4])
    for target in (tmp_path, Path("/proc/kdkit-nope/m.onnx")):
        with pytest.raises(ConfigError) as err:
            export_onnx(model, torch.randn(4, 8), target)
        assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []
