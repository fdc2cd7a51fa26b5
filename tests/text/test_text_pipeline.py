"""Text through the config pipeline: built-in reviews and the user's own CSV files, vocab_size filled in from the
data, cost measured on real token ids, and text-specific config mistakes as one line."""

import json

import pytest

from kdkit.errors import ConfigError, ModelError
from kdkit.families.classification.config import parse_config
from kdkit.families.classification.pipeline import evaluate_run, run

MODELS = {
    "teacher": {"name": "text_transformer", "params": {"dim": 16, "heads": 2, "layers": 1}},
    "student": {"name": "text_bow", "params": {"dim": 8}},
}


def _raw(tmp_path, data):
    return {"seed": 0, "output_dir": str(tmp_path / "run"), "data": data,
            "train": {"epochs": 1, "batch_size": 128, "lr": 3e-3, "progress": False}, **MODELS}


def _write_csv(path, rows):
    path.write_text("review,stars\n" + "".join(f'"{text}",{label}\n' for text, label in rows))
    return path


def _files(tmp_path):
    good = ["great film", "loved it", "not bad at all", "really good"]
    bad = ["awful film", "hated it", "not good at all", "really bad"]
    rows = [(t, "pos") for t in good] * 10 + [(t, "neg") for t in bad] * 10
    return {"name": "text_files", "train_file": str(_write_csv(tmp_path / "train.csv", rows)),
            "test_file": str(_write_csv(tmp_path / "test.csv", rows[::4])),
            "text_column": "review", "label_column": "stars", "max_len": 8}


def test_builtin_reviews_run_with_vocab_size_from_the_data(tmp_path):
    result = run(parse_config(_raw(tmp_path, {"name": "synthetic_reviews"})), quick_cost=True)
    assert [r["role"] for r in result.rows] == ["teacher", "student_alone", "student_kd"]
    assert all(r["latency_ms"] > 0 and r["params"] > 0 for r in result.rows)
    assert result.rows[0]["params"] > result.rows[2]["params"]  # the transformer against the bag of words
    rows = evaluate_run(tmp_path / "run", quick_cost=True)  # rebuilds the models with vocab_size from the data
    saved = json.loads((tmp_path / "run" / "results.json").read_text())["rows"]
    assert [r["accuracy"] for r in rows] == [r["accuracy"] for r in saved]


def test_own_csv_files_through_the_config(tmp_path):
    result = run(parse_config(_raw(tmp_path, _files(tmp_path))), quick_cost=True)
    data = json.loads((tmp_path / "run" / "results.json").read_text())["data"]
    assert data["num_classes"] == 2 and data["input_shape"] == [8] and data["n_test"] == 20
    assert result.rows[0]["accuracy"] >= 0.0


@pytest.mark.parametrize(("change", "words"), [
    (lambda d: d.pop("test_file"), ["train_file and test_file"]),
    (lambda d: d.update(train_file="nowhere.csv"), ["train_file", "not found"]),
    (lambda d: d.update(name="mnist1d"), ["do not apply to data source 'mnist1d'", "text_files"]),
    (lambda d: d.update(transfer_size=5), ["transfer_size"]),
])
def test_text_config_mistakes_are_one_line(tmp_path, change, words):
    data = _files(tmp_path)
    change(data)
    with pytest.raises(ConfigError) as err:
        parse_config(_raw(tmp_path, data))
    assert "\n" not in str(err.value) and all(w in str(err.value) for w in words), str(err.value)


def test_an_explicit_vocab_size_wins(tmp_path):
    raw = _raw(tmp_path, {"name": "synthetic_reviews"})
    raw["student"] = {"name": "text_bow", "params": {"dim": 8, "vocab_size": 3}}  # too small for the data's ids
    with pytest.raises(ModelError, match="vocab"):
        run(parse_config(raw), quick_cost=True)
    assert not (tmp_path / "run").exists()  # refused by a probe before anything trained or was written
