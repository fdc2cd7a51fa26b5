"""Using a run's student afterwards: `kdkit.load` gives back the trained model (its logits equal the run's saved
test predictions) with class names and preprocessing; `kdkit predict` reads tensors, CSV, image folders and text
files the way the run's data was read."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from image_folders import make_folder
from rich.console import Console

import kdkit
from kdkit.cli import main
from kdkit.data import build_data
from kdkit.errors import ConfigError, RunDirError
from kdkit.families.classification.config import parse_config
from kdkit.families.classification.demo import demo_config
from kdkit.families.classification.pipeline import run

QUIET = Console(file=io.StringIO())


def _saved(run_dir: Path, role: str) -> np.ndarray:
    with np.load(run_dir / "predictions.npz", allow_pickle=False) as npz:
        return npz[f"test_{role}"]


def _predict(capsys, *args: str) -> list[dict[str, str]]:
    capsys.readouterr()  # drop what training printed
    with pytest.raises(SystemExit) as done:
        main(["predict", *args])
    assert done.value.code == 0
    return list(csv.DictReader(io.StringIO(capsys.readouterr().out)))


@pytest.fixture(scope="module")
def tensor_run(demo_quick_copy) -> Path:
    return demo_quick_copy("use")  # `kdkit demo --quick`, seed 0


def test_load_gives_the_trained_model_in_eval_mode(tensor_run):
    cfg = demo_config(seed=0, output_dir=tensor_run, quick=True)
    test_x = build_data(cfg.data, cfg.seed).test.tensors[0]
    for role in ("student_kd", "student_alone", "teacher"):
        loaded = kdkit.load(tensor_run, model=role)
        assert not loaded.model.training and loaded.kind == "tensor" and loaded.input_shape == (40,)
        assert loaded.class_names == [str(i) for i in range(10)]
        np.testing.assert_allclose(loaded.logits(test_x), _saved(tensor_run, role), rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="unknown model 'student'"):
        kdkit.load(tensor_run, model="student")


def test_predict_npy_and_csv(tensor_run, tmp_path, capsys):
    cfg = demo_config(seed=0, output_dir=tensor_run, quick=True)
    test_x = build_data(cfg.data, cfg.seed).test.tensors[0][:7].numpy()
    np.save(tmp_path / "x.npy", test_x)
    np.savetxt(tmp_path / "x.csv", test_x, delimiter=",", header=",".join(f"v{i}" for i in range(40)), comments="")
    expected = [str(i) for i in _saved(tensor_run, "student_kd")[:7].argmax(1)]
    rows = _predict(capsys, str(tensor_run), str(tmp_path / "x.npy"))
    assert [r["class"] for r in rows] == expected and rows[0]["input"] == "x.npy[0]"
    rows = _predict(capsys, str(tensor_run), str(tmp_path / "x.csv"), "-o", str(tmp_path / "p.csv"))
    assert [r["class"] for r in rows] == expected
    assert list(csv.DictReader((tmp_path / "p.csv").open())) == rows
    np.save(tmp_path / "bad.npy", np.zeros((3, 39), np.float32))
    with pytest.raises(SystemExit) as done:
        main(["predict", str(tensor_run), str(tmp_path / "bad.npy")])
    assert done.value.code == 2
    assert "do not fit the model's input shape (40,)" in capsys.readouterr().err


def test_missing_meta_names_the_fix(tensor_run, tmp_path):
    import shutil

    copy = tmp_path / "old"
    shutil.copytree(tensor_run, copy, ignore=shutil.ignore_patterns("checkpoints", "meta.json"))
    with pytest.raises(RunDirError, match="kdkit evaluate"):
        kdkit.load(copy)


def test_image_folder_round_trip(tmp_path, capsys):
    data = make_folder(tmp_path / "data", {"train": 8, "test": 4})
    raw = {"output_dir": str(tmp_path / "run"), "data": {"name": "image_folder", "root": str(data), "image_size": 16,
                                                        "val_fraction": 0.25},
           "teacher": {"name": "small_cnn"}, "student": {"name": "tiny_cnn"},
           "train": {"epochs": 1, "batch_size": 8, "progress": False}}
    run(parse_config(raw), console=QUIET, quick_cost=True)
    loaded = kdkit.load(tmp_path / "run")
    assert loaded.kind == "image" and loaded.class_names == ["normal", "pneumonia"]
    assert loaded.preprocessing["image_size"] == [16, 16] and len(loaded.preprocessing["mean"]) == 3
    names, x, _ = loaded.read(data / "test")
    assert names[0] == "normal/000.png" and len(names) == 8
    np.testing.assert_allclose(loaded.logits(x), _saved(tmp_path / "run", "student_kd"), rtol=1e-5, atol=1e-5)
    rows = _predict(capsys, str(tmp_path / "run"), str(data / "test" / "pneumonia"), "--model", "teacher")
    expected = _saved(tmp_path / "run", "teacher")[4:].argmax(1)
    assert [r["class"] for r in rows] == [loaded.class_names[i] for i in expected]


def test_text_round_trip(tmp_path, capsys):
    cfg = demo_config(seed=0, output_dir=tmp_path / "run", quick=True, task="text")
    cfg.data.transfer_size = 0
    cfg.train.epochs = 1
    run(cfg, console=QUIET, quick_cost=True)
    meta = json.loads((tmp_path / "run" / "models" / "meta.json").read_text())
    assert meta["kind"] == "text" and meta["preprocessing"]["vocabulary"] == "vocab.json"
    loaded = kdkit.load(tmp_path / "run")
    bundle = build_data(cfg.data, cfg.seed)
    assert loaded.vocab.tokens == bundle.vocab.tokens and loaded.class_names == bundle.class_names
    np.testing.assert_allclose(loaded.logits(bundle.test.tensors[0]), _saved(tmp_path / "run", "student_kd"),
                               rtol=1e-5, atol=1e-5)
    texts = ["the plot was not bad", "awful but good", "terrible"]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    rows = _predict(capsys, str(tmp_path / "run"), str(tmp_path / "in.txt"))
    expected = loaded.logits(bundle.vocab.encode(texts)).argmax(1)
    assert [r["class"] for r in rows] == [loaded.class_names[i] for i in expected]


def test_onnx_file_carries_what_predicting_needs(tensor_run, tmp_path, capsys):
    onnxruntime = pytest.importorskip("onnxruntime")
    target = tmp_path / "student.onnx"
    with pytest.raises(SystemExit) as done:
        main(["export", str(tensor_run), "-o", str(target)])
    assert done.value.code == 0
    assert "export: loading" in capsys.readouterr().out  # says what it does before the slow part
    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    props = session.get_modelmeta().custom_metadata_map
    assert props["kdkit.input_name"] == session.get_inputs()[0].name == "input"
    assert json.loads(props["kdkit.class_names"]) == [str(i) for i in range(10)]
    assert json.loads(props["kdkit.input_shape"]) == ["batch", 40] and props["kdkit.kind"] == "tensor"
    assert props["kdkit.model"] == "student_kd" and json.loads(props["kdkit.preprocessing"]) is None
