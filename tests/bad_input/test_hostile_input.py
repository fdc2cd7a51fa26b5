"""A corpus of broken inputs made at test time, through the real CLI: configs, image folders, text files, inputs to
predict, damaged run directories (kdkit's and kdkit tabular's). Each must give exit code 2, exactly one line on
stderr starting with 'error:' that names the file, key, line or class at fault, no traceback, and leave every
file already written as it was (hashed before and after).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hostile import TINY, assert_refused, cli, fingerprint, write_config

from kdkit.config.yaml import dump_yaml

# ------------------------------------------------------------------------------------------------ configs


@pytest.mark.parametrize(("text", "needles"), [
    ("seed: 0\nseed: 1\n", ["'seed'", "line 1 and line 2"]),
    ("train:\n  epochs: 2\n  lr: 0.1\n  epochs: 3\n", ["'epochs'", "line 2 and line 4"]),
    ("teacher: {name: mlp\n", ["not valid YAML", "line 2"]),
    ("teacher:\n\tname: mlp\n", ["not valid YAML", "'\\t'"]),
    ("teacher: !!python/object/apply:os.system ['true']\n", ["not valid YAML", "python/object"]),
    ("- a\n- b\n", ["mapping of keys"]),
])
def test_yaml_pitfalls(tmp_path, text, needles):
    config = write_config(tmp_path / "c.yaml", text=text)
    assert_refused(cli(["train", config]), *needles)


@pytest.mark.parametrize(("raw", "needles"), [
    ("caf\xe9: 1\n".encode("latin-1"), ["c.yaml", "not UTF-8", "line 1"]),
    ("seed: 0\n# \xe9t\xe9\n".encode("latin-1"), ["not UTF-8", "line 2"]),
    ("seed: 0\n".encode("utf-16"), ["UTF-16"]),
    (bytes(range(256)), ["binary"]),
])
def test_configs_that_are_not_utf8_text(tmp_path, raw, needles):
    (tmp_path / "c.yaml").write_bytes(raw)
    assert_refused(cli(["train", tmp_path / "c.yaml"]), *needles)


@pytest.mark.parametrize(("overrides", "key"), [
    ({"train": {"epochs": True}}, "train.epochs"),                       # YAML `yes` is a boolean, not 1
    ({"train": {"lr": "0.01"}}, "train.lr"),                            # a quoted number is a string
    ({"train": {"batch_size": 2**64}}, "train.batch_size"),             # beyond sys.maxsize
    ({"train": {"device": "gpu"}}, "train.device"),
    ({"train": {"device": "cuda:7"}}, "train.device"),                  # not on this machine
    ({"seed": -1}, "seed"),
    ({"distill": {"losses": [{"name": "kd", "weight": "heavy"}]}}, "distill.losses.0.weight"),
    ({"distill": {"losses": [{"name": "kd", "weight": -0.5}]}}, "distill.losses.0.weight"),
    ({"distill": {"losses": [{"name": "kd", "T": "hot"}]}}, "distill.losses.0.T"),
    ({"student": {"name": "mlp", "params": {"hidden": [True]}}}, "student.params.hidden"),
    ({"teacher": {"name": "mlp", "train": {"epochs": "yes"}}}, "teacher.train.epochs"),
])
def test_values_a_schema_must_catch(tmp_path, overrides, key):
    config = write_config(tmp_path / "c.yaml", overrides)
    line = assert_refused(cli(["train", config]), key)
    assert "Traceback" not in line and not (tmp_path / "run").exists()


def test_a_negative_width_is_one_line_naming_the_model(tmp_path):
    config = write_config(tmp_path / "c.yaml", {"student": {"name": "mlp", "params": {"hidden": [-8]}}})
    assert_refused(cli(["train", config]), "model 'mlp'", "negative")


def test_nan_temperature_names_its_key(tmp_path):
    cfg = {**TINY, "output_dir": str(tmp_path / "run"), "distill": {"losses": [{"name": "kd", "T": float("nan")}]}}
    (tmp_path / "c.yaml").write_text(dump_yaml(cfg))
    assert_refused(cli(["train", tmp_path / "c.yaml"]), "distill.losses.0.T", "finite")


def test_a_number_written_1e_3_is_a_float(tmp_path):
    from kdkit.families.classification.config import load_config

    config = write_config(tmp_path / "c.yaml")
    config.write_text(config.read_text().replace("  progress: false\n", "  progress: false\n  lr: 1e-3\n"))
    assert load_config(config).train.lr == pytest.approx(0.001)


def test_paths_of_the_wrong_kind(tmp_path):
    assert_refused(cli(["train", tmp_path]), "is a directory")
    (tmp_path / "taken").write_text("someone's notes")
    before = fingerprint(tmp_path / "taken")
    config = write_config(tmp_path / "c.yaml", {"output_dir": str(tmp_path / "taken")})
    assert_refused(cli(["train", config]), "taken", "is a file")
    assert fingerprint(tmp_path / "taken") == before


def test_a_batch_larger_than_the_data_is_flagged_in_one_line(tmp_path):
    config = write_config(tmp_path / "c.yaml", {"train": {"epochs": 1, "batch_size": 5000, "progress": False}})
    out = cli(["train", config, "--quick-timing"])  # checks the warnings, not the timing
    assert out.code == 0, out.err + out.crash
    warnings = [line for line in out.out.splitlines() if "batch_size 5000 exceeds" in line]
    assert len(warnings) == 3 and all(line.startswith("warning:") for line in warnings)


def test_config_errors_through_a_real_process(tmp_path):
    config = write_config(tmp_path / "c.yaml", text="seed: 0\nteacher: {name: mlp}\nseed: 2\n")
    done = subprocess.run([sys.executable, "-m", "kdkit.cli", "train", str(config)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "line 1 and line 3" in lines[0], done.stderr


# ------------------------------------------------------------------------------------------------ image folders


def _png(path: Path, shade: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8), shade).save(path)


def _images(root: Path, classes=("cat", "dog"), n=3) -> Path:
    for split in ("train", "test"):
        for k, name in enumerate(classes):
            for i in range(n):
                _png(root / split / name / f"{i}.png", 40 * i + 100 * k)
    return root


BROKEN_FOLDERS = {
    "one class": (lambda r: [shutil.rmtree(r / s / "dog") for s in ("train", "test")], ["1 class", "cat"]),
    "garbage image": (lambda r: (r / "train" / "cat" / "x.png").write_bytes(b"not a png"), ["x.png"]),
    "empty image": (lambda r: (r / "train" / "dog" / "e.jpg").write_bytes(b""), ["e.jpg"]),
    "empty class": (lambda r: [p.unlink() for p in (r / "train" / "dog").iterdir()], ["dog", "no image files"]),
    "train is a file": (lambda r: (shutil.rmtree(r / "train"), (r / "train").write_text("x")), ["train"]),
    "class only in test": (lambda r: _png(r / "test" / "bird" / "0.png", 1), ["'bird'"]),
    "a single image per class": (lambda r: [p.unlink() for c in ("cat", "dog")
                                            for p in sorted((r / "train" / c).iterdir())[1:]], ["same label"]),
}


@pytest.mark.parametrize("name", list(BROKEN_FOLDERS))
def test_broken_image_folders(tmp_path, name):
    damage, needles = BROKEN_FOLDERS[name]
    root = _images(tmp_path / "images")
    damage(root)
    before = fingerprint(root)
    config = write_config(tmp_path / "c.yaml", {"data": {"name": "image_folder", "root": str(root), "image_size": 8,
                                                         "channels": 1}})
    assert_refused(cli(["train", config]), *needles)
    assert fingerprint(root) == before and not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------------ text files

GOOD_TEXT = "text,label\n" + "".join(f"good film {i},pos\nbad film {i},neg\n" for i in range(8))
BROKEN_TEXTS = {
    "latin1": (("text,label\ncaf\xe9 ok,pos\n" + GOOD_TEXT.split("\n", 1)[1]).encode("latin-1"), ["line 2", "UTF-8"]),
    "utf16": (GOOD_TEXT.encode("utf-16"), ["UTF-16"]),
    "binary": (bytes(range(256)), ["binary"]),
    "extra field": ((GOOD_TEXT + "so so,pos,later\n").encode(), ["line 18", "3 field(s)"]),
    "missing field": ((GOOD_TEXT + "lonely\n").encode(), ["line 18", "1 field(s)"]),
    "one class": (("text,label\n" + "".join(f"good {i},pos\n" for i in range(9))).encode(), ["1 class", "pos"]),
    "jsonl broken": (b'{"text": "a", "label": "x"}\n{"text": \n', ["train.jsonl:2"]),
}


@pytest.mark.parametrize("name", list(BROKEN_TEXTS))
def test_broken_text_files(tmp_path, name):
    raw, needles = BROKEN_TEXTS[name]
    suffix = ".jsonl" if name.startswith("jsonl") else ".csv"
    (tmp_path / f"train{suffix}").write_bytes(raw)
    test_raw = raw if name == "one class" else GOOD_TEXT.encode()
    (tmp_path / "test.csv").write_bytes(test_raw)
    config = write_config(tmp_path / "c.yaml", {
        "data": {"name": "text_files", "train_file": str(tmp_path / f"train{suffix}"),
                 "test_file": str(tmp_path / "test.csv")},
        "teacher": {"name": "text_bow", "params": {}}, "student": {"name": "text_bow", "params": {}}})
    assert_refused(cli(["train", config]), *needles)
    assert not (tmp_path / "run").exists()


def test_a_refused_run_leaves_the_earlier_run_as_it_was(tmp_path, tiny_run):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = fingerprint(run)
    (tmp_path / "train.csv").write_bytes(BROKEN_TEXTS["latin1"][0])
    (tmp_path / "test.csv").write_text(GOOD_TEXT)
    config = write_config(tmp_path / "c.yaml", {
        "output_dir": str(run), "data": {"name": "text_files", "train_file": str(tmp_path / "train.csv"),
                                         "test_file": str(tmp_path / "test.csv")},
        "teacher": {"name": "text_bow", "params": {}}, "student": {"name": "text_bow", "params": {}}})
    assert_refused(cli(["train", config, "--overwrite"]), "train.csv")
    assert fingerprint(run) == before


# ------------------------------------------------------------------------------------------------ run directories


def _truncate(path: Path, size: int = 40) -> None:
    path.write_bytes(path.read_bytes()[:size])


def _nan_logits(run: Path) -> None:
    arrays = dict(np.load(run / "predictions.npz"))
    arrays["test_teacher"] = np.full_like(arrays["test_teacher"], np.nan)
    np.savez(run / "predictions.npz", **arrays)


DAMAGE = {
    "teacher weights truncated": (lambda r: _truncate(r / "models" / "teacher.safetensors"), "teacher.safetensors"),
    "student weights empty": (lambda r: (r / "models" / "student_kd.safetensors").write_bytes(b""),
                              "student_kd.safetensors"),
    "config.yaml binary": (lambda r: (r / "config.yaml").write_bytes(bytes(range(256))), "config.yaml"),
    "config.yaml bad value": (lambda r: (r / "config.yaml").write_text(
        (r / "config.yaml").read_text().replace("epochs: 1", "epochs: many")), "config.yaml"),
    "meta.json not UTF-8": (lambda r: (r / "models" / "meta.json").write_bytes(b'{"kind": "caf\xe9"}'), "meta.json"),
    "meta.json fields wrong": (lambda r: (r / "models" / "meta.json").write_text(json.dumps(
        {**json.loads((r / "models" / "meta.json").read_text()), "input_shape": "8x8"})), "meta.json"),
    "results.json truncated": (lambda r: _truncate(r / "results.json"), "results.json"),
    "predictions garbage": (lambda r: (r / "predictions.npz").write_bytes(b"PK\x03\x04junk"), "predictions.npz"),
    "predictions NaN": (_nan_logits, "predictions.npz"),
    "metrics.jsonl not UTF-8": (lambda r: (r / "metrics.jsonl").write_bytes(b'{"a": "\xe9"}\n'), "metrics.jsonl"),
    "metrics.jsonl not objects": (lambda r: (r / "metrics.jsonl").write_text("[1, 2]\n"), "metrics.jsonl"),
}
# which commands read which file: a command that never reads a damaged file may rightly succeed
COMMANDS = {
    "evaluate": ["teacher weights truncated", "student weights empty", "config.yaml binary", "config.yaml bad value"],
    "predict": ["student weights empty", "config.yaml binary", "meta.json not UTF-8", "meta.json fields wrong"],
    "export": ["student weights empty", "config.yaml bad value", "meta.json not UTF-8"],
    "report": ["results.json truncated", "predictions garbage", "predictions NaN", "metrics.jsonl not UTF-8",
               "metrics.jsonl not objects"],
    "compare": ["results.json truncated", "predictions NaN", "metrics.jsonl not UTF-8"],
}
CASES = [(command, damage) for command, damages in COMMANDS.items() for damage in damages]


@pytest.mark.parametrize(("command", "damage"), CASES, ids=[f"{c}: {d}" for c, d in CASES])
def test_damaged_run_directories(tmp_path, tiny_run, command, damage):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    hurt, needle = DAMAGE[damage]
    hurt(run)
    inputs = tmp_path / "inputs.npy"
    np.save(inputs, np.zeros((2, 1, 8, 8), np.float32))
    argv = {"evaluate": ["evaluate", run, "--quick"], "predict": ["predict", run, inputs], "export": ["export", run],
            "report": ["report", run], "compare": ["compare", run, tiny_run, "-o", tmp_path / "cmp"]}[command]
    before = fingerprint(run)
    assert_refused(cli(argv), needle)
    assert fingerprint(run) == before


def test_predict_inputs_that_are_not_numbers(tmp_path, tiny_run):
    np.save(tmp_path / "words.npy", np.array(["a"] * 64).reshape(1, 1, 8, 8))
    assert_refused(cli(["predict", tiny_run, tmp_path / "words.npy"]), "words.npy", "not numbers")
    (tmp_path / "empty.npy").write_bytes(b"")
    assert_refused(cli(["predict", tiny_run, tmp_path / "empty.npy"]), "empty.npy")
    np.save(tmp_path / "nan.npy", np.full((3, 1, 8, 8), np.nan, np.float32))
    assert_refused(cli(["predict", tiny_run, tmp_path / "nan.npy"]), "nan.npy", "sample 1", "NaN")


# ------------------------------------------------------------------------------------------------ tabular


def _tabular_csv(path: Path, n: int = 24) -> Path:
    rng = np.random.default_rng(0)
    path.write_text("a,b,c,y\n" + "".join(f"{rng.normal():.3f},{rng.normal():.3f},{rng.normal():.3f},{i % 2}\n"
                                          for i in range(n)))
    return path


@pytest.fixture(scope="module")
def tabular_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tab")
    (folder / "test.csv").write_text("a,b\n1,2\n3,4\n")
    done = cli(["tabular", "fit", "--train", _tabular_csv(folder / "train.csv"), "--test", folder / "test.csv",
                "--target", "y", "--teacher", "lightgbm", "--student", "lightgbm", "--n-splits", "2",
                "--run-dir", folder / "run"])
    assert done.code == 0, done.err + done.crash
    return folder / "run"


TABULAR_DAMAGE = {
    "manifest garbage": (lambda r: (r / "models" / "manifest.json").write_text("{oops"), "manifest.json"),
    "model file truncated": (lambda r: [_truncate(p, 10) for p in (r / "models").glob("*.txt")], ".txt"),
    "models removed": (lambda r: shutil.rmtree(r / "models"), "manifest.json"),
}


@pytest.mark.parametrize("damage", list(TABULAR_DAMAGE))
def test_damaged_tabular_run_directories(tmp_path, tabular_run, damage):
    run = tmp_path / "run"
    shutil.copytree(tabular_run, run)
    hurt, needle = TABULAR_DAMAGE[damage]
    hurt(run)
    (tmp_path / "new.csv").write_text("a,b\n1,2\n")
    before = fingerprint(run)
    assert_refused(cli(["tabular", "predict", run, "--input", tmp_path / "new.csv"]), needle)
    assert fingerprint(run) == before


@pytest.mark.parametrize(("raw", "needles"), [
    ("a,b\ncaf\xe9,1\n".encode("latin-1"), ["new.csv", "line 2", "UTF-8"]),
    (b"a,b\n,\n1,2\n", ["new.csv", "line 2", "no value"]),
    (b"a,b\n1,2\n1e999,3\n", ["new.csv", "line 3", "'a'", "infinite"]),
    (b"a,b\n1,2,3\n", ["new.csv", "line 2", "field"]),
    (b"a,b\n1,2\nabc,4\n", ["new.csv", "line 3", "'a'", "non-numeric value 'abc'"]),
    (b"a;b\n1,5;2\n", ["new.csv", "';'-separated", "decimal=','"]),
    (b"a;b\n1.5;2\n", ["new.csv", "';'-separated"]),
])
def test_tabular_inputs_to_predict(tmp_path, tabular_run, raw, needles):
    (tmp_path / "new.csv").write_bytes(raw)
    before = fingerprint(tabular_run)
    assert_refused(cli(["tabular", "predict", tabular_run, "--input", tmp_path / "new.csv"]), *needles)
    assert fingerprint(tabular_run) == before


def test_tabular_errors_through_a_real_process(tmp_path):
    _tabular_csv(tmp_path / "train.csv")
    (tmp_path / "test.csv").write_bytes("a,b\n1,caf\xe9\n".encode("latin-1"))
    (tmp_path / "run").write_text("not a directory")
    done = subprocess.run([sys.executable, "-m", "kdkit.cli", "tabular", "fit", "--train", str(tmp_path / "train.csv"),
                           "--test", str(tmp_path / "test.csv"), "--target", "y", "--run-dir", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()  # paths are checked before any CSV is read: the run directory first
    assert len(lines) == 1 and lines[0].startswith("error:") and "run is a file" in lines[0], done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert (tmp_path / "run").read_text() == "not a directory"
