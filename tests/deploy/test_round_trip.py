"""Every saved model answers as it did in its run: for a tiny run of each kind (an image folder, word-level text,
raw text with an hf: teacher and a word-level student, tagging, a table, a language model) and each of its three
models, `kdkit.load` (Python), `kdkit predict` (CLI) and `kdkit evaluate` reproduce the run's own test predictions
(predictions.npz); a model whose inputs cannot be rebuilt is refused in one line.

Tolerances, and why. Torch classifiers: logits to 1e-5 (absolute and relative), classes exactly. The weights and
inputs are the same; only the batches differ (512 test rows per batch in the run, 256 in kdkit.load), and float32
kernels may round a row differently in another batch. `kdkit predict` prints probabilities with 4 decimals, so they
are compared to 5e-5. Tables: log-probabilities to 1e-9, since the fold models are read back from their native files
and give the same float64 numbers. Language models: per-row sums of float32 log-probabilities to 1e-5 relative,
greedy answers exactly.

Each run is built once per module, 1-2 epochs on a few dozen samples."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from image_folders import make_folder
from rich.console import Console
from text_real_helpers import WORDS, save_tiny_bert

import kdkit
from kdkit.cli import main

pytest.importorskip("transformers")
QUIET = Console(file=io.StringIO())
ROLES = ("teacher", "student_alone", "student_kd")
KINDS = ("image", "words", "raw_text", "tagging", "table", "lm")
TORCH_KINDS = ("image", "words", "raw_text", "tagging")


def _saved(run: Path, name: str = "predictions.npz") -> dict[str, np.ndarray]:
    with np.load(run / name, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _cli(capsys, *args: str) -> str:
    """stdout of a kdkit command that must succeed."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(list(args))
    captured = capsys.readouterr()
    assert done.value.code == 0, captured.err
    return captured.out


def _refused(capsys, *args: str) -> str:
    """The one stderr line of a kdkit command that must exit with code 2."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(list(args))
    err = capsys.readouterr().err.strip()
    assert done.value.code == 2 and len(err.splitlines()) == 1, err
    return err


def _reviews(n: int, seed: int) -> list[tuple[str, str]]:
    """Short reviews of the tiny BERT's words whose label follows their sentiment words."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        cue = ["good", "great", "fun"] if label == "pos" else ["bad", "awful", "dull"]
        words = [str(rng.choice(cue)) for _ in range(2)] + [str(rng.choice(WORDS)) for _ in range(4)]
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


def _csv(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("review", "verdict")) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _train(raw: dict) -> Path:
    from kdkit.families.classification.config import parse_config
    from kdkit.families.classification.pipeline import run

    run(parse_config(raw), console=QUIET, quick_cost=True)
    return Path(raw["output_dir"])


TRAIN = {"epochs": 1, "batch_size": 16, "progress": False, "device": "cpu"}


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("image")
    data = make_folder(tmp / "data", {"train": 8, "test": 4})
    run = _train({"output_dir": str(tmp / "run"), "train": TRAIN, "teacher": {"name": "small_cnn"},
                  "student": {"name": "tiny_cnn"},
                  "data": {"name": "image_folder", "root": str(data), "image_size": 16, "val_fraction": 0.25}})
    return run, data / "test"  # the test split, in the order the run read it


def _text_files(tmp: Path, raw_text: bool) -> dict:
    return {"name": "text_files", "raw_text": raw_text, "train_file": str(_csv(tmp / "train.csv", _reviews(40, 0))),
            "test_file": str(_csv(tmp / "test.csv", _reviews(12, 1))), "text_column": "review",
            "label_column": "verdict", "max_len": 8}


@pytest.fixture(scope="module")
def words(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("words")
    run = _train({"output_dir": str(tmp / "run"), "train": TRAIN, "data": _text_files(tmp, raw_text=False),
                  "teacher": {"name": "text_gru", "params": {"dim": 8, "hidden": 8}},
                  "student": {"name": "text_bow", "params": {"dim": 8}}})
    return run, tmp / "test.csv"  # read by `predict` from the run's own text column, 'review'


@pytest.fixture(scope="module")
def raw_text(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("raw_text")
    teacher = save_tiny_bert(tmp / "bert", hidden=8, layers=1)
    data = {**_text_files(tmp, raw_text=True), "transfer_size": 6,
            "unlabelled_file": str(_csv(tmp / "more.csv", _reviews(10, 2)))}  # beside Tang et al.'s sentences
    run = _train({"output_dir": str(tmp / "run"), "train": TRAIN, "data": data,
                  "teacher": {"name": f"hf:{teacher}", "params": {"max_tokens": 12}},
                  "student": {"name": "text_bilstm", "params": {"dim": 8, "hidden": 8, "fc": 8}},
                  "distill": {"losses": [{"name": "kd", "T": 2.0, "alpha": 0.5}], "cache_teacher": True}})
    return run, tmp / "test.csv"


@pytest.fixture(scope="module")
def tagging(tmp_path_factory) -> tuple[Path, Path]:
    from kdkit.data.tagging import tagged_sentence

    tmp = tmp_path_factory.mktemp("tagging")
    run = _train({"output_dir": str(tmp / "run"), "train": TRAIN,
                  "data": {"name": "synthetic_tagging", "n_train": 48, "n_test": 12},
                  "teacher": {"name": "text_transformer", "params": {"dim": 8, "heads": 2, "layers": 1,
                                                                     "pooling": "none"}},
                  "student": {"name": "text_cnn", "params": {"width": 8, "kernels": [3], "pooling": "none"}},
                  "distill": {"losses": [{"name": "token_kd", "T": 2.0, "alpha": 0.5}]}})
    rng = np.random.default_rng(0)  # the generator's sentences: the last 12 are the test split
    sentences = [" ".join(tagged_sentence(rng)[0]) for _ in range(48 + 12)]
    (tmp / "test.txt").write_text("\n".join(sentences[48:]) + "\n")
    return run, tmp / "test.txt"


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> tuple[Path, Path]:
    pytest.importorskip("lightgbm")
    from typer.testing import CliRunner

    from kdkit.families.tabular.cli import app

    tmp = tmp_path_factory.mktemp("table")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    frame = {"a": x[:, 0] + rng.normal(scale=0.5, size=60), "b": x[:, 1], "lab": x[:, 2],
             "y": (x[:, 0] + x[:, 2] > 0).astype(int)}
    import pandas as pd

    pd.DataFrame(frame).to_csv(tmp / "train.csv", index=False)
    fitted = CliRunner().invoke(app, ["fit", "--train", str(tmp / "train.csv"), "--target", "y", "--student-columns",
                                      "a,b", "--teacher", "lightgbm", "--student", "lightgbm", "--n-splits", "2",
                                      "--teacher-params", '{"n_estimators": 8, "min_child_samples": 5}',
                                      "--student-params", '{"n_estimators": 8, "min_child_samples": 5}',
                                      "--run-dir", str(tmp / "run")])
    assert fitted.exit_code == 0, fitted.output
    run, lines = tmp / "run", (tmp / "train.csv").read_text().splitlines(keepends=True)
    held = [int(line) for line in (run / "holdout.csv").read_text().split()[1:]]  # file lines, the header is 1
    (tmp / "held_out.csv").write_text(lines[0] + "".join(lines[n - 1] for n in held))
    return run, tmp / "held_out.csv"  # the rows its test predictions are made on, as written in train.csv


@pytest.fixture(scope="module")
def lm(tmp_path_factory) -> tuple[Path, Path]:
    from lm_configs import shrunk_config

    from kdkit.families.lm.commands import load_lm_run_models

    tmp = tmp_path_factory.mktemp("lm")
    _cli_quiet(["train", str(shrunk_config(tmp, 0))])
    run = tmp / "run0"
    _cfg, data, _models = load_lm_run_models(run)
    (tmp / "prompts.txt").write_text("".join(data.tokenizer.decode(p) + "\n" for p in data.test.prompts))
    return run, tmp / "prompts.txt"


def _cli_quiet(args: list[str]) -> None:
    try:
        main(args)
    except SystemExit as done:
        assert not done.code


# ------------------------------------------------------------------------------------------ kdkit.load


def _lm_units(loaded, teacher, run: Path) -> dict[str, np.ndarray]:
    from kdkit.families.lm.commands import load_lm_run_models
    from kdkit.lm.metrics import exact_hits, lm_units

    _cfg, data, _models = load_lm_run_models(run)
    units = lm_units(loaded.model, data.test, None if loaded.role == "teacher" else teacher.model)
    eos = data.tokenizer.eos_token_id
    pad = data.tokenizer.pad_token_id if data.tokenizer.pad_token_id is not None else eos
    units["exact"] = exact_hits(loaded.model, data.test, eos, pad)[0]
    return units


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("kind", KINDS)
def test_load_gives_the_runs_test_predictions(kind, role, request):
    run, inputs = request.getfixturevalue(kind)
    saved = _saved(run)
    loaded = kdkit.load(run, model=role)
    if kind in TORCH_KINDS:
        assert not loaded.model.training
        names, x, _ = loaded.read(inputs)
        np.testing.assert_allclose(loaded.logits(x), saved[f"test_{role}"], rtol=1e-5, atol=1e-5)
        assert len(names) == len(saved["test_labels"])
    elif kind == "table":
        import pandas as pd

        proba = loaded.predict_proba(pd.read_csv(inputs))
        np.testing.assert_allclose(np.log(np.clip(proba, 1e-12, 1.0)), saved[f"test_{role}"], rtol=0, atol=1e-9)
    else:
        units = _lm_units(loaded, kdkit.load(run, model="teacher"), run)
        for key, value in units.items():
            name = "test_tokens" if key == "tokens" else f"test_{role}_{key}"
            np.testing.assert_allclose(value, saved[name], rtol=1e-5, atol=1e-9, err_msg=key)
        prompts = inputs.read_text().splitlines()
        answers = loaded.generate(prompts)
        from kdkit.families.lm.commands import load_lm_run_models

        data = load_lm_run_models(run)[1]
        right = [a == data.tokenizer.decode(r) for a, r in zip(answers, data.test.responses, strict=True)]
        assert right == list(saved[f"test_{role}_exact"] == 1.0)


# --------------------------------------------------------------------------------------- kdkit predict


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("kind", KINDS)
def test_predict_gives_the_runs_test_predictions(kind, role, request, capsys):
    run, inputs = request.getfixturevalue(kind)
    saved = _saved(run)
    rows = list(csv.DictReader(io.StringIO(_cli(capsys, "predict", str(run), str(inputs), "--model", role))))
    if kind in ("image", "words", "raw_text"):
        class_names = json.loads((run / "models" / "meta.json").read_text())["class_names"]
        proba = _softmax(saved[f"test_{role}"])
        assert [r["class"] for r in rows] == [class_names[k] for k in proba.argmax(1)]
        np.testing.assert_allclose([float(r["probability"]) for r in rows], proba.max(1), rtol=0, atol=5e-5)
    elif kind == "tagging":
        tags = saved[f"test_{role}"].argmax(-1)
        for row, line, labels, predicted in zip(rows, inputs.read_text().splitlines(), saved["test_labels"], tags,
                                                strict=True):
            shown = [pair.rsplit("/", 1) for pair in row["tags"].split()]
            assert [w for w, _ in shown] == line.split()[: len(labels)]
            classes = ["other", "positive", "negative"]
            assert [t for _, t in shown] == [classes[k] for k in predicted[: len(shown)]]
    elif kind == "table":
        proba = np.exp(saved[f"test_{role}"])
        np.testing.assert_allclose([float(r["probability"]) for r in rows], proba[:, 1], rtol=0, atol=1e-9)
    else:
        right = [float(r["completion"] == r["reference"]) for r in _with_references(rows, run)]
        assert right == saved[f"test_{role}_exact"].tolist()


def _with_references(rows: list[dict[str, str]], run: Path) -> list[dict[str, str]]:
    from kdkit.families.lm.commands import load_lm_run_models

    data = load_lm_run_models(run)[1]
    return [{**row, "reference": data.tokenizer.decode(r)} for row, r in zip(rows, data.test.responses, strict=True)]


# -------------------------------------------------------------------------------------- kdkit evaluate

_EVALUATED: dict[str, dict[str, np.ndarray]] = {}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("kind", KINDS)
def test_evaluate_gives_the_runs_test_predictions(kind, role, request, capsys):
    run, _ = request.getfixturevalue(kind)
    if kind not in _EVALUATED:  # one evaluation measures the three models
        _cli(capsys, "evaluate", str(run), *([] if kind == "lm" else ["--quick"]))
        _EVALUATED[kind] = _saved(run, "evaluation_predictions.npz")
    saved, again = _saved(run), _EVALUATED[kind]
    arrays = ("test", "train", "oof") if kind == "table" else ("test",)  # a table's fitting rows are remade too
    keys = [k for k in saved if k.startswith(tuple(f"{a}_{role}" for a in arrays))]
    assert keys
    for key in keys:
        tolerance = {"table": (0, 1e-9), "lm": (1e-5, 1e-9)}.get(kind, (1e-5, 1e-5))
        np.testing.assert_allclose(again[key], saved[key], rtol=tolerance[0], atol=tolerance[1], err_msg=key)


# ------------------------------------------------------------------------------ refused in one line


def test_raw_text_models_take_texts_not_arrays(raw_text, tmp_path, capsys):
    """An array of ids would reach the hf: teacher and the word student as the ids of one tokenizer."""
    run, _ = raw_text
    np.save(tmp_path / "ids.npy", np.ones((2, 8), dtype=np.int64))
    err = _refused(capsys, "predict", str(run), str(tmp_path / "ids.npy"), "--model", "teacher")
    assert "read raw text, each through its own tokenizer" in err


def test_a_model_whose_tokenizer_folder_is_gone_is_refused_in_one_line(raw_text, capsys):
    run, inputs = raw_text
    folder = Path(json.loads((run / "models" / "meta.json").read_text())["models"]["teacher"]["name"][3:])
    moved = folder.with_name("bert-moved")
    folder.rename(moved)
    try:
        err = _refused(capsys, "predict", str(run), str(inputs), "--model", "teacher")
        assert f"hf:{folder}" in err and "put the folder back" in err
        assert kdkit.load(run, model="student_kd").raw_text  # the students need only the run's vocabulary
    finally:
        moved.rename(folder)


def test_a_table_whose_training_file_changed_or_went_is_refused_in_one_line(table, capsys):
    """Its held-out rows are chosen again from the training file: other rows there would be other held-out rows."""
    run, _ = table
    import yaml

    train = Path(yaml.safe_load((run / "config.yaml").read_text())["data"]["train"])
    text = train.read_text()
    try:
        train.write_text(text + text.splitlines(keepends=True)[1] * 10)
        assert "no longer gives the held-out rows" in _refused(capsys, "evaluate", str(run), "--quick")
        train.unlink()
        assert f"{train} is missing" in _refused(capsys, "evaluate", str(run), "--quick")
    finally:
        train.write_text(text)


def test_predict_reads_the_runs_text_column_or_the_one_given(words, tmp_path, capsys):
    run, inputs = words
    texts = [row["review"] for row in csv.DictReader(inputs.open())]
    _csv(tmp_path / "other.csv", [(t, "") for t in texts], header=("comment", "note"))
    err = _refused(capsys, "predict", str(run), str(tmp_path / "other.csv"))
    assert "has no column 'review' (columns: comment, note)" in err and "--text-column" in err
    given = _cli(capsys, "predict", str(run), str(tmp_path / "other.csv"), "--text-column", "comment")
    assert given == _cli(capsys, "predict", str(run), str(inputs))
    (tmp_path / "other.jsonl").write_text("".join(json.dumps({"comment": t}) + "\n" for t in texts))
    assert _cli(capsys, "predict", str(run), str(tmp_path / "other.jsonl"), "--text-column", "comment") == given
    loaded = kdkit.load(run)
    assert loaded.text_column == "review"
    assert loaded.read(tmp_path / "other.csv", text_column="comment")[2] == texts


def test_a_raw_text_run_distils_on_its_unlabelled_file_too(raw_text):
    run, _ = raw_text
    labels = _saved(run)["train_labels"]  # the distillation data: training rows, then the transfer set
    assert (labels == -1).sum() == 6 + 10  # Tang et al.'s 6 sentences and the file's 10 texts
