"""Text data (vocabulary, CSV/JSONL, generated reviews), text models, the token-level KD loss, and a short
text distillation run."""

import json
import math

import pytest
import torch

from kdkit.data import SOURCES, load_builtin, make_loader
from kdkit.data.text import (
    PAD_ID,
    UNK_ID,
    Vocabulary,
    compose,
    generate_reviews,
    load_text_files,
    tokenize,
)
from kdkit.errors import ConfigError, DataError, ModelError
from kdkit.losses import build_loss
from kdkit.losses.token_kd import token_kd_loss
from kdkit.models import build_model
from kdkit.schemes import OfflineDistillation, Supervised
from kdkit.terms import build_terms
from kdkit.trainer.loop import fit, predict
from kdkit.trainer.settings import TrainSettings

TRAIN = [("the food was good", "pos"), ("not good at all", "neg"), ("good good service", "pos"),
         ("bad food", "neg"), ("the service was bad", "neg"), ("really good", "pos")]


def write_csv(path, rows, header=("text", "label")):
    lines = [",".join(header)] + [f'"{t}",{y}' for t, y in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_jsonl(path, rows, keys=("text", "label")):
    path.write_text("\n".join(json.dumps({keys[0]: t, keys[1]: y}) for t, y in rows) + "\n")
    return path


# ------------------------------------------------------------------------------------------- vocabulary


def test_tokenize_splits_words_and_punctuation():
    assert tokenize("Not BAD, really! Isn't it?") == ["not", "bad", ",", "really", "!", "isn't", "it", "?"]


def test_vocabulary_orders_by_frequency_and_respects_min_freq_and_max_vocab():
    texts = ["b a a", "c a b", "d"]
    vocab = Vocabulary.build(texts, max_len=4)
    assert vocab.tokens[:2] == ["<pad>", "<unk>"]
    assert vocab.tokens[2:] == ["a", "b", "c", "d"]  # a:3, b:2, then c and d tied, alphabetical
    assert Vocabulary.build(texts, 4, min_freq=2).tokens[2:] == ["a", "b"]
    assert len(Vocabulary.build(texts, 4, max_vocab=3)) == 3


def test_encode_pads_truncates_and_maps_unknown_words():
    vocab = Vocabulary.build(["good film", "bad film"], max_len=3)
    ids = vocab.encode(["good film", "good unseen film plot", ""])
    assert ids.dtype == torch.long and ids.shape == (3, 3)
    assert ids[0].tolist() == [vocab.index["good"], vocab.index["film"], PAD_ID]
    assert ids[1].tolist() == [vocab.index["good"], UNK_ID, vocab.index["film"]]  # cut after 3 tokens
    assert ids[2].tolist() == [PAD_ID] * 3


def test_vocabulary_json_round_trip(tmp_path):
    vocab = Vocabulary.build(["a b c", "c d"], max_len=5, class_names=["neg", "pos"])
    loaded = Vocabulary.load(vocab.save(tmp_path / "vocab.json"))
    assert loaded.tokens == vocab.tokens and loaded.class_names == ["neg", "pos"] and loaded.max_len == 5
    assert torch.equal(loaded.encode(["c a zz"]), vocab.encode(["c a zz"]))
    (tmp_path / "other.json").write_text('{"tokens": []}')
    with pytest.raises(DataError, match="not a kdkit vocabulary"):
        Vocabulary.load(tmp_path / "other.json")


# ------------------------------------------------------------------------------------------- files


def test_csv_loading_builds_vocabulary_from_train_only(tmp_path):
    train = write_csv(tmp_path / "train.csv", TRAIN)
    test = write_csv(tmp_path / "test.csv", [("zebra good", "pos"), ("bad", "neg")])
    bundle = load_text_files(train, test, val=train, max_len=6)
    assert "zebra" not in bundle.vocab.index  # a test-only word is not in the vocabulary
    x_test, y_test = bundle.test.tensors
    assert x_test.shape == (2, 6) and x_test[0, 0] == UNK_ID
    assert bundle.class_names == ["neg", "pos"] and y_test.tolist() == [1, 0]
    assert bundle.input_shape == (6,) and bundle.num_classes == 2
    assert bundle.model_kwargs == {"vocab_size": len(bundle.vocab)}


def test_jsonl_loading_with_custom_columns_and_a_validation_split(tmp_path):
    rows = TRAIN * 3
    train = write_jsonl(tmp_path / "train.jsonl", rows, keys=("review", "stars"))
    test = write_jsonl(tmp_path / "test.jsonl", rows[:2], keys=("review", "stars"))
    bundle = load_text_files(train, test, text_column="review", label_column="stars", val_fraction=0.25, seed=1)
    assert len(bundle.train) + len(bundle.val) == len(rows) and len(bundle.val) > 0
    assert len(bundle.test) == 2


def test_too_few_rows_to_hold_out_validation(tmp_path):
    one = write_csv(tmp_path / "one.csv", TRAIN[:1])
    with pytest.raises(DataError, match="too few"):
        load_text_files(one, one)


def test_unlabelled_file_is_a_transfer_set_the_teacher_labels(tmp_path):
    from kdkit.data.raw_text import RawTextBundle
    from kdkit.data.source import source_options
    from kdkit.models.raw_text import decode_texts

    train = write_csv(tmp_path / "train.csv", TRAIN * 3, header=("review", "verdict"))
    test = write_csv(tmp_path / "test.csv", TRAIN[:2], header=("review", "verdict"))
    texts = ["the zebra was good", "service bad", "really really bad food"]
    (tmp_path / "more.csv").write_text("id,review\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(texts)))
    (tmp_path / "more.jsonl").write_text("".join(json.dumps({"review": t}) + "\n" for t in texts))
    (tmp_path / "more.txt").write_text("\n".join(texts) + "\n\n")
    data = {"name": "text_files", "train_file": str(train), "test_file": str(test), "text_column": "review",
            "label_column": "verdict", "max_len": 6}

    def bundle(**keys):
        return source_options({**data, **keys}).load(0)

    words = bundle(unlabelled_file=str(tmp_path / "more.csv"))  # kdkit's word ids, the training vocabulary's
    x, y = words.transfer.tensors
    assert y.tolist() == [-1] * 3 and torch.equal(x, words.vocab.encode(texts))
    assert x[0, 1] == UNK_ID  # "zebra": the vocabulary is still the training split's alone
    for name in ("more.jsonl", "more.txt"):
        assert torch.equal(bundle(unlabelled_file=str(tmp_path / name)).transfer.tensors[0], x)
    raw = bundle(raw_text=True, transfer_size=4, unlabelled_file=str(tmp_path / "more.csv"))  # beside Tang et al.'s
    assert isinstance(raw, RawTextBundle) and len(raw.transfer) == 4 + 3
    assert decode_texts(raw.transfer.tensors[0][4:]) == texts and raw.transfer.tensors[1].tolist() == [-1] * 7
    assert bundle().transfer is None
    (tmp_path / "other.csv").write_text("text\nthe food\n")
    with pytest.raises(DataError, match=r"other.csv has no column 'review' \(columns: text\); set data.text_column"):
        bundle(unlabelled_file=str(tmp_path / "other.csv"))
    with pytest.raises(ConfigError, match="unlabelled_file: file not found"):
        from kdkit.families.classification.config import parse_config

        parse_config({"data": {**data, "unlabelled_file": str(tmp_path / "missing.csv")}})


def test_integer_labels_are_ordered_numerically(tmp_path):
    rows = [("a", 10), ("b", 2), ("c", 1)]
    bundle = load_text_files(write_jsonl(tmp_path / "t.jsonl", rows), tmp_path / "t.jsonl",
                             val=tmp_path / "t.jsonl")
    assert bundle.class_names == ["1", "2", "10"]
    assert bundle.train.tensors[1].tolist() == [2, 1, 0]


@pytest.mark.parametrize("case, match", [
    ("missing_file", "not found"),
    ("missing_column", "has no column 'label'"),
    ("empty_text", "empty text"),
    ("unknown_label", "label"),
    ("bad_suffix", "use .csv or .jsonl"),
    ("bad_json", "not valid JSON"),
    ("empty_label", "empty label"),
])
def test_bad_text_files_raise_one_line_data_errors(tmp_path, case, match):
    train = write_csv(tmp_path / "train.csv", TRAIN)
    test = write_csv(tmp_path / "test.csv", TRAIN[:2])
    if case == "missing_file":
        test = tmp_path / "nope.csv"
    elif case == "missing_column":
        test = write_csv(tmp_path / "test.csv", TRAIN[:2], header=("text", "y"))
    elif case == "empty_text":
        test.write_text('text,label\n"   ",pos\n')
    elif case == "unknown_label":
        test = write_csv(tmp_path / "test.csv", [("good", "mixed")])
    elif case == "bad_suffix":
        test = tmp_path / "test.txt"
        test.write_text("good\n")
    elif case == "empty_label":
        test.write_text('text,label\n"good film",pos\n"boring and slow",\n')
    elif case == "bad_json":
        test = tmp_path / "test.jsonl"
        test.write_text('{"text": "good", "label": "pos"}\n{oops\n')
    with pytest.raises(DataError, match=match) as err:
        load_text_files(train, test, val=train)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------- generated set


def test_generated_reviews_are_deterministic_and_cover_all_classes():
    texts, labels = generate_reviews(300, generator_seed=3)
    assert (texts, labels) == generate_reviews(300, generator_seed=3)
    assert texts != generate_reviews(300, generator_seed=4)[0]
    assert set(labels) == {0, 1, 2, 3}
    assert sum(" but " in t for t in texts) > 50  # contrasts are common, not a corner case


def test_review_labels_depend_on_word_order():
    good, bad = ("the food was very good", 1, True), ("the service was not awful", -1, False)
    swapped = {form: (compose(good, bad, form), compose(bad, good, form))
               for form in ("but", "although_first", "although_second")}
    for (text_a, label_a), (text_b, label_b) in swapped.values():
        assert sorted(tokenize(text_a)) == sorted(tokenize(text_b))  # the same bag of words...
        assert label_a != label_b  # ...with another label
    assert swapped["but"][0][1] == 1 and swapped["although_second"][0][1] == 3  # the deciding clause's class
    negated = compose(("the plot was not good", -1, False), None, "single")
    assert negated == ("the plot was not good .", 1)


def test_synthetic_reviews_is_a_builtin_source_with_a_transfer_set():
    assert "synthetic_reviews" in SOURCES
    a = load_builtin("synthetic_reviews", seed=0, n_train=200, n_test=50, transfer_size=30)
    b = load_builtin("synthetic_reviews", seed=0, n_train=200, n_test=50)
    assert torch.equal(a.test.tensors[0], b.test.tensors[0]) and torch.equal(a.train.tensors[1], b.train.tensors[1])
    assert a.train.tensors[0].shape[1] == a.input_shape[0] and len(a.test) == 50
    assert len(a.transfer) == 30 and bool((a.transfer.tensors[1] == -1).all())
    assert a.class_names == ["very negative", "negative", "positive", "very positive"]


# ------------------------------------------------------------------------------------------- models

TEXT_MODELS = {"text_transformer": {"dim": 16, "heads": 2, "layers": 1}, "text_bow": {"hidden": 8},
               "text_cnn": {"kernels": [1, 3]}, "text_gru": {"hidden": 8}}


@pytest.mark.parametrize("name", sorted(TEXT_MODELS))
def test_text_models_ignore_padding(name):
    torch.manual_seed(0)
    model = build_model(name, (12,), 3, vocab_size=20, **TEXT_MODELS[name]).eval()
    short = torch.randint(2, 20, (4, 7))
    short[1, 5:] = PAD_ID  # a row shorter than the others
    padded = torch.cat([short, torch.zeros(4, 5, dtype=torch.long)], dim=1)
    with torch.no_grad():
        out_short, out_padded = model(short), model(padded)
    assert out_padded.shape == (4, 3)
    assert torch.allclose(out_short, out_padded, atol=1e-5)
    other = short.clone()
    other[0, 0] = 2 + (other[0, 0] - 1) % 18  # another first word changes the first row's logits
    with torch.no_grad():
        assert not torch.allclose(model(other)[0], out_short[0])


def test_transformer_with_cls_pooling_and_an_empty_row():
    model = build_model("text_transformer", (6,), 2, vocab_size=10, dim=8, heads=2, layers=1, pooling="cls").eval()
    out = model(torch.tensor([[3, 4, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]]))
    assert out.shape == (2, 2) and bool(torch.isfinite(out).all())


def test_text_model_input_errors():
    with pytest.raises(ConfigError, match="vocab_size"):
        build_model("text_transformer", (8,), 2)
    model = build_model("text_bow", (8,), 2, vocab_size=10)
    with pytest.raises(ModelError, match="integer tensor"):
        model(torch.zeros(2, 8))
    with pytest.raises(ModelError, match="token id 12 is outside"):
        model(torch.tensor([[1, 12]]))
    with pytest.raises(ModelError, match="max_len 8"):
        build_model("text_transformer", (8,), 2, vocab_size=10, dim=8, heads=2)(torch.ones(1, 9, dtype=torch.long))


# ------------------------------------------------------------------------------------------- token KD


def _hand_token_kd(s, t, y, temperature, alpha):
    """The formula, position by position, in plain Python."""
    kls, ces = [], []
    for n in range(len(s)):
        for pos in range(len(s[n])):
            if y[n][pos] == -1:
                continue
            zs = [v / temperature for v in s[n][pos]]
            zt = [v / temperature for v in t[n][pos]]
            ls = [z - math.log(sum(math.exp(w) for w in zs)) for z in zs]
            lt = [z - math.log(sum(math.exp(w) for w in zt)) for z in zt]
            kls.append(sum(math.exp(a) * (a - b) for a, b in zip(lt, ls, strict=True)))
            raw = s[n][pos]
            ces.append(math.log(sum(math.exp(v) for v in raw)) - raw[y[n][pos]])
    return (1 - alpha) * temperature**2 * sum(kls) / len(kls) + alpha * sum(ces) / len(ces)


def test_token_kd_matches_the_hand_computation():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    y = torch.tensor([[1, 3, -1], [0, -1, -1]])
    for temperature, alpha in [(1.0, 0.0), (3.0, 0.4)]:
        expected = _hand_token_kd(s.tolist(), t.tolist(), y.tolist(), temperature, alpha)
        got = build_loss("token_kd", T=temperature, alpha=alpha)(s, t, y)
        assert got.item() == pytest.approx(expected, rel=1e-5)


def test_token_kd_ignores_padded_positions():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(2, 4, 5, generator=g, requires_grad=True), torch.randn(2, 4, 5, generator=g)
    y = torch.tensor([[2, 0, -1, -1], [4, 1, 3, -1]])
    loss = token_kd_loss(s, t, y, alpha=0.3)
    changed_t = t.clone()
    changed_t[y == -1] = 100.0 * torch.randn_like(changed_t[y == -1])  # teacher noise only where padded
    assert token_kd_loss(s, changed_t, y, alpha=0.3).item() == pytest.approx(loss.item(), rel=1e-6)
    assert token_kd_loss(s, t, mask=y != -1).item() == pytest.approx(token_kd_loss(s, t, y).item(), rel=1e-6)
    loss.backward()
    assert bool((s.grad[y == -1] == 0).all()) and bool((s.grad[y != -1] != 0).any())
    nothing = token_kd_loss(s, t, torch.full((2, 4), -1))
    assert nothing.item() == 0.0 and nothing.requires_grad


def test_token_kd_rejects_bad_arguments():
    with pytest.raises(ConfigError, match="alpha"):
        build_loss("token_kd", alpha=2.0)
    with pytest.raises(ValueError, match=r"\(N, L, C\)"):
        token_kd_loss(torch.zeros(2, 3, 4), torch.zeros(2, 4, 3))


def test_token_kd_on_one_position_per_row_equals_kd():
    g = torch.Generator().manual_seed(2)
    s, t, y = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g), torch.tensor([0, 2, -1, 1, 1])
    expected = build_loss("kd", T=2.0, alpha=0.0)(s[y != -1], t[y != -1])
    assert token_kd_loss(s, t, y, temperature=2.0).item() == pytest.approx(expected.item(), rel=1e-6)


# ------------------------------------------------------------------------------------------- end to end


def test_short_text_distillation_runs_end_to_end():
    data = load_builtin("synthetic_reviews", seed=0, n_train=256, n_test=64, transfer_size=0)
    settings = TrainSettings(epochs=2, batch_size=64, lr=3e-3, progress=False)
    train, val = make_loader(data.train, 64, True), make_loader(data.val, 256, False)
    test = make_loader(data.test, 64, False)
    teacher = build_model("text_transformer", data.input_shape, data.num_classes, dim=16, heads=2, layers=1,
                          **data.model_kwargs)
    fit(Supervised(teacher), train, val, settings)
    student = build_model("text_bow", data.input_shape, data.num_classes, **data.model_kwargs)
    before = [p.detach().clone() for p in student.parameters()]
    scheme = OfflineDistillation(student, teacher, build_terms([{"name": "kd"}]))
    result = fit(scheme, train, val, settings)
    scheme.close()
    assert len(result.history) == 2 and math.isfinite(result.history[-1]["train_loss"])
    assert "val_agreement" in result.history[-1]
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters(), strict=True))
    logits, labels = predict(student, test)
    assert logits.shape == (64, 4) and labels.shape == (64,)


# ------------------------------------------------------------------------------------------- hf: (optional extra)


def test_hf_resolver_loads_a_local_folder_and_masks_padding(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=32, num_labels=2)
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(config).save_pretrained(tmp_path / "tiny")
    model = build_model(f"hf:{tmp_path / 'tiny'}", (10,), 3, vocab_size=20).eval()  # 2 saved labels -> new head
    short = torch.randint(2, 20, (2, 6))
    with torch.no_grad():
        out_short = model(short)
        out_padded = model(torch.cat([short, torch.zeros(2, 4, dtype=torch.long)], dim=1))
    assert out_short.shape == (2, 3)
    assert torch.allclose(out_short, out_padded, atol=1e-5)
    with pytest.raises(ModelError, match="not a local directory"):
        build_model(f"hf:{tmp_path / 'missing'}", (10,), 3)
    with pytest.raises(ModelError, match="30 token embeddings"):
        build_model(f"hf:{tmp_path / 'tiny'}", (10,), 3, vocab_size=50)


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("review,stars\n".encode("utf-8-sig") + b"good film,pos\nbad film,neg\n")
    bundle = load_text_files(path, path, val=path, text_column="review", label_column="stars")
    assert bundle.class_names == ["neg", "pos"]
