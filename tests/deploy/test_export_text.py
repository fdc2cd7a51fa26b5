"""ONNX export of raw-text runs: the graph takes token ids and the tokenizer is written beside it and
named in the metadata; ONNX Runtime on texts tokenized that way gives the PyTorch model's logits on the raw texts.
Packed-RNN students (text_bilstm, text_gru) export through their unpacked form. Tiny HF BERTs in tmp folders."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("transformers")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import onnxruntime  # noqa: E402
from text_real_helpers import save_tiny_bert  # noqa: E402

from kdkit.cli import main  # noqa: E402
from kdkit.deploy.export import export_checked, export_onnx  # noqa: E402
from kdkit.errors import ModelError  # noqa: E402
from kdkit.families.classification.config import parse_config  # noqa: E402
from kdkit.models import build_model  # noqa: E402
from kdkit.models.raw_text import WordTokenized, encode_texts  # noqa: E402
from kdkit.models.unpacked import onnx_form, reverse_within_length  # noqa: E402

TEXTS = ["the film was good", "not a very fun movie , but great acting !", "awful plot", "the story is dull .",
         "a great film", "bad acting and a dull story", "very good fun", "the movie was not good"]
LABELS = ["pos", "neg", "neg", "neg", "pos", "neg", "pos", "neg"]
UNSEEN = ["a plot nobody saw coming", "good", "dull dull dull dull dull dull dull dull dull dull dull dull dull dull"]


def _csv(path: Path, n: int) -> Path:
    rows = list(zip(TEXTS, LABELS, strict=True)) * (n // len(TEXTS))
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([("review", "verdict"), *rows])
    return path


def _ids(n: int, length: int, vocab: int, generator: torch.Generator) -> torch.Tensor:
    """Left-aligned word ids padded with 0 on the right, with rows of every length from 0 to `length`."""
    x = torch.randint(2, vocab, (n, length), generator=generator)
    lengths = torch.arange(n) % (length + 1)
    x[torch.arange(length).unsqueeze(0) >= lengths.unsqueeze(1)] = 0
    return x


def _session(path: Path) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# ------------------------------------------------------------------------------------- packed-RNN students


def test_reverse_within_length_reverses_each_texts_words_and_leaves_padding():
    h = torch.arange(10.0).view(2, 5, 1)
    out = reverse_within_length(h, torch.tensor([3, 5]))
    assert out.squeeze(-1).tolist() == [[2, 1, 0, 3, 4], [9, 8, 7, 6, 5]]


@pytest.mark.parametrize(("name", "params"), [("text_bilstm", {"dim": 8, "hidden": 6, "fc": 8}),
                                               ("text_gru", {"dim": 8, "hidden": 6})])
def test_packed_rnn_students_have_unpacked_forms_with_the_same_logits(name, params):
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = build_model(name, (10,), 3, vocab_size=40, **params).eval()
    x = _ids(22, 10, 40, generator)  # every length 0..10, twice
    form = onnx_form(model)
    assert type(form) is not type(model)
    with torch.no_grad():
        assert torch.allclose(model(x), form(x), atol=1e-6)
        (model.lstm if name == "text_bilstm" else model.gru).weight_hh_l0.add_(1.0)
        assert not torch.allclose(model(x), form(x), atol=1e-3)  # a copy: the form reads the weights it was made of


def test_a_gru_student_exports_to_onnx_through_its_unpacked_form(tmp_path):
    """(The BiLSTM's export is checked on the raw-text run below: one export per test, they are slow.)"""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = build_model("text_gru", (10,), 3, vocab_size=40, dim=8, hidden=6)
    report = export_onnx(model, _ids(22, 10, 40, generator), tmp_path / "m.onnx")
    assert report.max_abs_diff < 1e-5 and model.training
    more = _ids(5, 10, 40, generator)
    with torch.no_grad():
        expected = model.eval()(more).numpy()
    got = _session(report.path).run(None, {"input": more.numpy()})[0]
    assert np.allclose(got, expected, atol=1e-5)


# ------------------------------------------------------------------------------------- a raw-text run


@pytest.fixture(scope="module")
def raw_run(tmp_path_factory):
    """A tiny raw-text run: an hf: teacher with its own WordPiece tokenizer, a word-vocabulary BiLSTM student."""
    from kdkit.families.classification.pipeline import run

    root = tmp_path_factory.mktemp("raw_run")
    folder = save_tiny_bert(root / "teacher", seed=1)
    data = {"name": "text_files", "raw_text": True, "train_file": str(_csv(root / "train.csv", 32)),
            "test_file": str(_csv(root / "test.csv", 16)), "text_column": "review", "label_column": "verdict",
            "max_len": 12}
    run(parse_config({"seed": 0, "output_dir": str(root / "run"), "data": data,
                      "train": {"epochs": 1, "batch_size": 16, "progress": False},
                      "teacher": {"name": f"hf:{folder}", "params": {"max_tokens": 10}},
                      "student": {"name": "text_bilstm", "params": {"dim": 8, "hidden": 8, "fc": 8}},
                      "distill": {"losses": [{"name": "kd", "T": 2.0, "alpha": 0.5}]}}), quick_cost=True)
    test_texts = [row["review"] for row in csv.DictReader((root / "test.csv").open())]
    return root / "run", folder, test_texts


def _export(run_dir: Path, role: str, target: Path, capsys) -> tuple[onnxruntime.InferenceSession, dict, str]:
    with pytest.raises(SystemExit) as done:
        main(["export", str(run_dir), "--model", role, "--output", str(target)])
    assert done.value.code in (0, None)
    printed = " ".join(capsys.readouterr().out.split())
    session = _session(target)
    return session, session.get_modelmeta().custom_metadata_map, printed


def _pytorch_logits(run_dir: Path, role: str, texts: list[str]) -> np.ndarray:
    from kdkit.families.classification.pipeline import load_run_models

    _cfg, _bundle, models = load_run_models(run_dir)
    with torch.no_grad():
        return models[role].eval()(encode_texts(texts)).numpy()


def _declared_inputs(session: onnxruntime.InferenceSession, meta: dict) -> dict:
    """The metadata's inputs, checked against the graph's own: names in order, dtypes, shapes."""
    declared = json.loads(meta["kdkit.inputs"])
    graph = session.get_inputs()
    assert list(declared) == [i.name for i in graph]
    for spec in graph:
        assert declared[spec.name]["shape"] == spec.shape
        assert spec.type == f"tensor({declared[spec.name]['dtype']})"
    assert meta["kdkit.input_name"] == graph[0].name
    return declared


def test_a_word_student_of_a_raw_text_run_exports_as_word_ids_with_its_vocabulary(raw_run, tmp_path, capsys):
    from kdkit.data.text import Vocabulary

    run_dir, _folder, test_texts = raw_run
    target = tmp_path / "deploy" / "student.onnx"
    session, meta, printed = _export(run_dir, "student_kd", target, capsys)
    assert "test texts" in printed and "same class 100.0%" in printed
    declared = _declared_inputs(session, meta)
    assert declared == {"input_ids": {"shape": ["batch", 12], "dtype": "int64"}}
    tokenizer = json.loads(meta["kdkit.tokenizer"])
    assert tokenizer["kind"] == "kdkit_words" and tokenizer["max_len"] == 12
    assert json.loads(meta["kdkit.class_names"]) == ["neg", "pos"] and meta["kdkit.model"] == "student_kd"
    vocab = Vocabulary.load(target.parent / tokenizer["folder"] / tokenizer["vocabulary"])  # what serving reads
    texts = test_texts + UNSEEN
    got = session.run(None, {"input_ids": vocab.encode(texts).numpy()})[0]
    assert np.allclose(got, _pytorch_logits(run_dir, "student_kd", texts), atol=1e-5)
    one = session.run(None, {"input_ids": vocab.encode(UNSEEN[:1]).numpy()})[0]  # the batch is dynamic
    assert one.shape == (1, 2)


def test_an_hf_teacher_of_a_raw_text_run_exports_to_be_fed_its_tokenizers_output_as_it_is(raw_run, tmp_path, capsys):
    from transformers import AutoTokenizer

    run_dir, folder, test_texts = raw_run
    target = tmp_path / "teacher.onnx"
    session, meta, printed = _export(run_dir, "teacher", target, capsys)
    assert "same class 100.0%" in printed
    declared = _declared_inputs(session, meta)
    assert list(declared) == ["input_ids", "attention_mask", "token_type_ids"]  # as a BERT tokenizer returns them
    assert all(spec == {"shape": ["batch", "sequence"], "dtype": "int64"} for spec in declared.values())
    tokenizer_meta = json.loads(meta["kdkit.tokenizer"])
    assert tokenizer_meta["kind"] == "huggingface" and tokenizer_meta["max_tokens"] == 10
    assert Path(tokenizer_meta["source"]) == folder
    assert json.loads(meta["kdkit.preprocessing"]) == tokenizer_meta
    tokenizer = AutoTokenizer.from_pretrained(target.parent / tokenizer_meta["folder"], local_files_only=True)
    expected = _pytorch_logits(run_dir, "teacher", test_texts + UNSEEN)
    for rows in (slice(None), slice(-1, None), slice(0, 3)):  # batch and sequence lengths vary
        texts = (test_texts + UNSEEN)[rows]
        enc = tokenizer(texts, padding=True, truncation=True, max_length=tokenizer_meta["max_tokens"],
                        return_tensors="np")
        got = session.run(None, dict(enc))[0]  # the tokenizer's output as it is
        assert np.allclose(got, expected[rows], atol=1e-5)


def test_a_raw_text_model_is_never_exported_as_a_graph_that_ignores_its_input(raw_run, tmp_path):
    from kdkit.data.text import Vocabulary

    run_dir, _folder, _texts = raw_run
    vocab = Vocabulary.load(run_dir / "models" / "vocab.json")
    torch.manual_seed(0)
    model = WordTokenized(build_model("text_cnn", (12,), 2, vocab_size=len(vocab), width=4), vocab.encode)
    raw = encode_texts(TEXTS)
    with pytest.raises(ModelError, match="export_raw_text") as err:
        export_onnx(model, raw, tmp_path / "m.onnx")
    assert "\n" not in str(err.value)
    with pytest.raises(ModelError, match="instead of") as err:  # tokenizing in the graph: traced into constants
        export_checked(model, {"input": raw}, tmp_path / "m.onnx", dynamic={"input": {0: "batch"}})
    assert "\n" not in str(err.value)
    assert not (tmp_path / "m.onnx").exists() and not list(tmp_path.iterdir())
