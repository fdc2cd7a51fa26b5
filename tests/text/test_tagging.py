"""Sequence labelling: generated tags that depend on context, per-token models, token-level losses and metrics over
the labelled tokens only, and a clear refusal of per-sample losses on per-token logits."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdkit import OfflineDistillation, Supervised, TrainSettings, build_model, build_terms, fit, predict
from kdkit.data import load_builtin, make_loader
from kdkit.data.tagging import TAG_CLASSES, tagged_sentence
from kdkit.data.text import tokenize
from kdkit.errors import ConfigError, ModelError
from kdkit.families.classification.config import parse_config
from kdkit.families.classification.pipeline import run
from kdkit.measure import metrics
from kdkit.report import load_run, write_report

QUIET = {"progress": False}


@pytest.fixture(scope="module")
def tags():
    return load_builtin("synthetic_tagging", n_train=600, n_test=200, max_len=24)


def test_tags_line_up_with_tokens_and_padding_is_unlabelled(tags):
    x, y = tags.train.tensors
    assert x.shape == y.shape == (540, 24)
    assert torch.equal(y == -1, x == 0)  # every real token is tagged, every pad is -1
    rng = np.random.default_rng(5)
    for _ in range(50):
        words, word_tags = tagged_sentence(rng)
        assert tokenize(" ".join(words)) == words and len(words) == len(word_tags)


def test_a_negator_flips_the_tag():
    rng = np.random.default_rng(0)
    seen = {}
    for _ in range(300):
        words, word_tags = tagged_sentence(rng)
        for i, word in enumerate(words):
            if word in ("good", "bad"):
                seen[(word, words[i - 1] in ("not", "never", "hardly"))] = TAG_CLASSES[word_tags[i]]
    assert seen[("good", False)] == "positive" and seen[("good", True)] == "negative"
    assert seen[("bad", False)] == "negative" and seen[("bad", True)] == "positive"


def test_per_token_models_give_one_row_per_token(tags):
    x = tags.test.tensors[0][:4]
    for name, params in [("text_transformer", {"dim": 16, "heads": 2, "layers": 1, "pooling": "none"}),
                         ("text_cnn", {"width": 8, "pooling": "none"})]:
        model = build_model(name, tags.input_shape, 3, **tags.model_kwargs, **params).eval()
        assert model(x).shape == (4, 24, 3), name


def test_metrics_count_the_labelled_tokens_only():
    logits = torch.tensor([[[2.0, 0, 0], [0, 2.0, 0], [0, 0, 9.0]], [[0, 0, 2.0], [5.0, 0, 0], [0, 5.0, 0]]])
    labels = torch.tensor([[0, 0, -1], [2, 0, -1]])  # the last token of each row is padding
    report = metrics.classification_report(logits, labels, teacher_logits=logits)
    assert report["accuracy"] == pytest.approx(3 / 4) and report["agreement"] == 1.0
    kept = logits[:, :2].reshape(-1, 3)
    assert report["nll"] == pytest.approx(F.cross_entropy(kept, labels[:, :2].reshape(-1)).item(), rel=1e-6)


def test_distil_a_tagger_with_token_kd(tags):
    train, val = make_loader(tags.train, 64, True), make_loader(tags.val, 256, False)
    torch.manual_seed(0)
    teacher = build_model("text_transformer", tags.input_shape, 3, **tags.model_kwargs, dim=32, heads=2, layers=2,
                          pooling="none")
    student = build_model("text_cnn", tags.input_shape, 3, **tags.model_kwargs, width=16, pooling="none")
    fit(Supervised(teacher), train, val, TrainSettings(epochs=15, lr=5e-3, **QUIET))
    logits, labels = predict(teacher, make_loader(tags.test, 256, False))
    majority = float((labels[labels != -1] == 0).mean())  # most tokens are "other"
    assert metrics.classification_report(logits, labels)["accuracy"] > majority + 0.05  # measured 0.934 vs 0.824
    before = predict(student, val)[0]
    terms = build_terms([{"name": "token_kd", "T": 2.0, "alpha": 0.5}])
    result = fit(OfflineDistillation(student, teacher, terms), train, val, TrainSettings(epochs=3, lr=5e-3, **QUIET))
    teacher_val = predict(teacher, val)[0]
    val_labels = predict(student, val)[1]
    agreement = metrics.classification_report(predict(student, val)[0], val_labels, teacher_val)["agreement"]
    assert agreement > metrics.classification_report(before, val_labels, teacher_val)["agreement"]
    assert result.best_metrics["agreement"] == pytest.approx(agreement)  # fit's validation scores the same tokens
    with pytest.raises(ModelError, match="token_kd"):  # a per-sample loss on per-token logits: one clear line
        fit(OfflineDistillation(student, teacher, build_terms([{"name": "kd"}])), train, val,
            TrainSettings(epochs=1, **QUIET))


def test_tagging_through_a_config(tmp_path):
    raw = {
        "seed": 0, "output_dir": str(tmp_path / "run"), "data": {"name": "synthetic_tagging"},
        "train": {"epochs": 1, "batch_size": 128, "lr": 3e-3, "progress": False},
        "teacher": {"name": "text_transformer", "params": {"dim": 16, "heads": 2, "layers": 1, "pooling": "none"}},
        "student": {"name": "text_cnn", "params": {"width": 8, "pooling": "none"}},
        "distill": {"losses": [{"name": "token_kd", "T": 2.0, "alpha": 0.5}]},
    }
    run(parse_config(raw), quick_cost=True)
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["rows"]
    assert [r["role"] for r in rows] == ["teacher", "student_alone", "student_kd"]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows)
    run_data = load_run(tmp_path / "run")  # the report scores the labelled tokens, as the table did
    labelled = int((load_builtin("synthetic_tagging").test.tensors[1] != -1).sum())
    assert len(run_data.test.labels) == labelled
    assert write_report(tmp_path / "run").html.is_file()
    raw["data"]["transfer_size"] = 100
    raw["output_dir"] = str(tmp_path / "never")
    with pytest.raises(ConfigError, match="transfer"):
        run(parse_config(raw))
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize(("data", "model", "words"), [
    ("synthetic_reviews", {"name": "text_cnn", "params": {"width": 8, "pooling": "none"}}, ["per token", "remove"]),
    ("synthetic_tagging", {"name": "text_cnn", "params": {"width": 8}}, ["per sample", "pooling: none"]),
])
def test_per_token_models_on_per_sample_labels_are_one_line(tmp_path, data, model, words):
    raw = {"seed": 0, "output_dir": str(tmp_path / "run"), "data": {"name": data},
           "train": {"epochs": 1, "progress": False},
           "teacher": {"name": "text_transformer", "params": {"dim": 16, "heads": 2, "layers": 1,
                                                              "pooling": "none" if data == "synthetic_tagging"
                                                              else "mean"}},
           "student": model, "distill": {"losses": [{"name": "ce"}]}}
    with pytest.raises(ModelError) as err:
        run(parse_config(raw))
    assert all(w in str(err.value) for w in words) and "\n" not in str(err.value), str(err.value)
    assert not (tmp_path / "run").exists()
