"""Language-model distillation: the decoder, LM data with masked prompts, generation, metrics, the top-k cache
round trip, the vocabulary check, the schemes (offline token KD through fit, on-policy reproducibility,
sequence-level KD) and the demo's quick run. Tiny models, a few seconds."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.utils.data import DataLoader

from kdkit import Supervised, TrainSettings, build_model, build_terms, fit
from kdkit.data import Indexed, make_loader
from kdkit.data.lm import CharTokenizer, encode_pairs, encode_texts, load_lm_files, synthetic_addition
from kdkit.errors import ConfigError, DataError, ModelError
from kdkit.lm import TopKCache, build_topk_cache, check_same_vocabulary, generate, lm_report, pad_prompts
from kdkit.lm.cache import topk_tail_divergence
from kdkit.lm.metrics import exact_match
from kdkit.losses import JSD, ForwardKL, ReverseKL, TotalVariation
from kdkit.models.lm import LMTransformer
from kdkit.schemes.offline import OfflineDistillation
from kdkit.schemes.on_policy import OnPolicyDistillation
from kdkit.schemes.sequence_level import distill_sequence_level, teacher_outputs
from kdkit.schemes.topk_cache import TopKCacheDistillation

QUIET = TrainSettings(epochs=1, batch_size=32, lr=3e-3, progress=False, monitor="nll", keep="last")


@pytest.fixture(scope="module")
def addition():
    return synthetic_addition(n_train=96, n_val=32, n_test=32, digits=2, seed=0)


def tiny(bundle, width: int = 16, layers: int = 1, seed: int = 0) -> LMTransformer:
    torch.manual_seed(seed)
    return LMTransformer(bundle.vocab_size, bundle.seq_len, layers=layers, width=width, heads=2)


def test_decoder_is_causal_and_registered(addition) -> None:
    model = build_model("lm_transformer", addition.input_shape, addition.num_classes, width=16, heads=2, layers=1)
    x = addition.train.x[:4]
    logits = model(x)
    assert logits.shape == (*x.shape, addition.vocab_size)
    changed = x.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % addition.vocab_size
    # positions before the change see the same prefix: identical logits; later ones differ
    assert torch.allclose(model(changed)[:, :5], logits[:, :5], atol=1e-5)
    assert not torch.allclose(model(changed)[:, 5:], logits[:, 5:])
    with pytest.raises(ModelError, match="context of"):
        model(torch.zeros(1, addition.seq_len + 1, dtype=torch.long))
    with pytest.raises(ConfigError, match="divisible"):
        build_model("lm_transformer", (8,), 10, width=10, heads=3)


def test_pairs_are_labelled_on_the_response_only() -> None:
    data = encode_pairs([[5, 6, 7]], [[8, 9]], seq_len=6, eos_id=1)
    assert data.x[0].tolist() == [5, 6, 7, 8, 9, 0]
    assert data.y[0].tolist() == [-1, -1, 8, 9, 1, -1]  # predicts 8 after the prompt, then 9, then eos
    with pytest.raises(DataError, match="seq_len"):
        encode_pairs([[5, 6, 7]], [[8, 9, 9, 9]], seq_len=5, eos_id=1)
    packed = encode_texts([[3, 4], [5]], seq_len=2, eos_id=1)
    assert packed.x.tolist() == [[3, 4]] and packed.y.tolist() == [[4, 1]]
    padded = encode_texts([[3, 4], [5]], seq_len=3, eos_id=1, mode="padded")
    assert padded.y.tolist() == [[4, 1, -1], [1, -1, -1]]


def test_addition_splits_are_distinct_and_correct(addition) -> None:
    tok = addition.tokenizer
    seen = [{tok.decode(p) for p in split.prompts} for split in (addition.train, addition.val, addition.test)]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    prompt, answer = tok.decode(addition.test.prompts[0]), tok.decode(addition.test.responses[0])
    a, b = (int(v) for v in prompt.rstrip("=").split("+"))
    assert int(answer[::-1]) == a + b  # least significant digit first


def test_jsonl_and_text_files(tmp_path) -> None:
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps({"prompt": f"q{i}:", "response": f"a{i}"})
                                                    for i in range(10)))
    (tmp_path / "test.jsonl").write_text(json.dumps({"prompt": "q1:", "response": "a1"}) + "\n")
    bundle = load_lm_files(tmp_path / "train.jsonl", tmp_path / "test.jsonl", seq_len=8, val_fraction=0.2)
    assert len(bundle.train) == 8 and len(bundle.val) == 2
    assert bundle.tokenizer.decode(bundle.test.prompts[0]) == "q1:"
    assert (bundle.test.y[0] >= 0).sum() == 3  # "a1" + eos
    (tmp_path / "train.txt").write_text("hello world\n\nanother line of text\n")
    raw = load_lm_files(tmp_path / "train.txt", tmp_path / "train.txt", val_file=tmp_path / "train.txt",
                        seq_len=4, mode="padded")
    assert raw.train.prompts is None and bool((raw.train.y[:, 0] >= 0).all())
    (tmp_path / "bad.jsonl").write_text('{"question": "x"}\n')
    with pytest.raises(DataError, match="row 1 has neither"):
        load_lm_files(tmp_path / "bad.jsonl", tmp_path / "test.jsonl")


def test_generation_handles_ragged_prompts_and_is_seeded(addition) -> None:
    model = tiny(addition)
    prompts, lengths = pad_prompts([[4, 5, 6], [7], [8, 9]])
    greedy = generate(model, prompts, lengths, 4)
    # a row generated alone gives the same tokens as in the ragged batch
    alone = generate(model, prompts[1:2, :1], lengths[1:2], 4)
    assert torch.equal(greedy.new[1], alone.new[0])
    draws = [generate(model, prompts, lengths, 4, greedy=False, generator=torch.Generator().manual_seed(s)).new
             for s in (3, 3, 4)]
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])


def test_offline_token_kd_trains_through_fit_and_metrics(addition, tmp_path) -> None:
    teacher, student = tiny(addition, width=32, seed=1), tiny(addition, seed=2)
    loader = make_loader(addition.train, 32, shuffle=True)
    val = DataLoader(addition.val, batch_size=64)
    fit(Supervised(teacher), loader, val, QUIET)
    terms = build_terms([{"name": "ce"}, {"name": "jsd", "beta": 0.5, "chunk_size": 4}])
    result = fit(OfflineDistillation(student, teacher, terms), loader, val, QUIET, run_dir=tmp_path)
    record = result.history[-1]
    assert {"train_ce", "train_jsd", "val_agreement", "val_nll"} <= set(record)
    report = lm_report(student, addition.test, teacher)
    assert report["perplexity"] == pytest.approx(math.exp(record["val_nll"]), rel=0.5)  # val vs test, same scale
    assert report["tokens"] == addition.test.labelled_tokens
    em = exact_match(student, addition.test, addition.tokenizer.eos_token_id)
    assert 0.0 <= em["exact_match"] <= 1.0 and em["tokens_per_s"] > 0


def test_topk_cache_round_trip(addition, tmp_path) -> None:
    teacher = tiny(addition, width=32, seed=3)
    info = build_topk_cache(teacher, addition.train, tmp_path / "cache", k=5, batch_size=7, shard_size=10,
                            dtype=torch.float32)
    assert info.rows == len(addition.train) and info.bytes > 0 and info.seconds > 0
    assert len(list((tmp_path / "cache").glob("shard_*.safetensors"))) == math.ceil(len(addition.train) / 10)
    cache = TopKCache(tmp_path / "cache")
    index = torch.tensor([0, 9, 10, 95, 42])
    logprobs, ids, tail = cache.get(index)
    with torch.no_grad():
        log_p = torch.log_softmax(teacher(addition.train.x[index]), -1)
    top, top_ids = log_p.topk(5, dim=-1)
    assert torch.equal(ids, top_ids)  # exact top-k ids, in order
    assert torch.allclose(logprobs, top, atol=1e-6)
    assert torch.allclose(tail, 1 - top.exp().sum(-1), atol=1e-6)
    half = build_topk_cache(teacher, addition.train, tmp_path / "half", k=5, shard_size=64)
    assert half.bytes < info.bytes  # float16 log-probs
    assert torch.allclose(TopKCache(tmp_path / "half").get(index)[0], top, atol=2e-2)
    with pytest.raises(DataError, match="holds rows"):
        cache.get(torch.tensor([len(addition.train)]))


@pytest.mark.parametrize("loss", [ForwardKL(), ReverseKL(), JSD(beta=0.3), TotalVariation()])
def test_topk_with_full_vocabulary_equals_full_loss(loss) -> None:
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 4, 9, generator=g), torch.randn(2, 4, 9, generator=g)
    y = torch.tensor([[-1, 2, 3, 4], [5, 6, -1, -1]])
    log_p = torch.log_softmax(t, -1)
    top, ids = log_p.topk(9, dim=-1)
    tail = (1 - top.exp().sum(-1)).clamp_min(0)
    assert float(topk_tail_divergence(loss, s, top, ids, tail, y)) == pytest.approx(float(loss(s, t, y)), abs=1e-5)
    top3, ids3 = log_p.topk(3, dim=-1)  # fewer buckets: a coarser comparison, never larger for KL (data processing)
    small = topk_tail_divergence(loss, s, top3, ids3, 1 - top3.exp().sum(-1), y)
    assert float(small) <= float(loss(s, t, y)) + 1e-6


def test_topk_cache_scheme_trains(addition, tmp_path) -> None:
    teacher = tiny(addition, width=32, seed=3)
    build_topk_cache(teacher, addition.train, tmp_path / "cache", k=4)
    scheme = TopKCacheDistillation(tiny(addition), TopKCache(tmp_path / "cache"), "reverse_kl")
    result = fit(scheme, make_loader(Indexed(addition.train), 32, shuffle=True), None, QUIET)
    assert result.history[-1]["train_reverse_kl"] > 0
    with pytest.raises(ConfigError, match="Indexed"):
        fit(scheme, make_loader(addition.train, 32, shuffle=True), None, QUIET)


def test_vocabulary_check_names_the_first_differing_token(tmp_path) -> None:
    a, b = CharTokenizer("abc"), CharTokenizer("abd")
    assert check_same_vocabulary(a, CharTokenizer("cba")) == 6
    with pytest.raises(ModelError, match=r"differ at id 5: teacher 'c', student 'd'"):
        check_same_vocabulary(a, b)
    with pytest.raises(ModelError, match="id 6: teacher '<none>', student 'e'"):
        check_same_vocabulary(a, CharTokenizer("abce"))


def test_hf_causal_lm_from_a_local_folder(tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    from kdkit.lm.vocab import check_same_vocabulary as check
    from kdkit.models.lm import load_causal_lm

    def save(folder, words):
        vocab = {w: i for i, w in enumerate(words)}
        raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
        raw.pre_tokenizer = pre_tokenizers.Whitespace()
        tok = transformers.PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", eos_token="<eos>",
                                                   pad_token="<pad>")
        config = transformers.GPT2Config(vocab_size=len(words), n_positions=16, n_embd=16, n_layer=1, n_head=2)
        transformers.GPT2LMHeadModel(config).save_pretrained(folder)
        tok.save_pretrained(folder)

    save(tmp_path / "t", ["<pad>", "<eos>", "<unk>", "one", "two", "three"])
    save(tmp_path / "s", ["<pad>", "<eos>", "<unk>", "one", "two", "four"])
    teacher, student = load_causal_lm(tmp_path / "t"), load_causal_lm(tmp_path / "s")
    ids = torch.tensor([teacher.tokenizer.encode("one two three")])
    assert teacher(ids).shape == (1, 3, 6)
    with pytest.raises(ModelError, match="differ at id 5: teacher 'three', student 'four'"):
        check(teacher.tokenizer, student.tokenizer)
    with pytest.raises(ModelError, match="differ at id 5"):  # the on-policy scheme checks before training
        OnPolicyDistillation(student, teacher, "jsd")
    assert isinstance(build_model(f"hf_lm:{tmp_path / 't'}", (3,), 6), torch.nn.Module)
    # the README's recipe: JSONL pairs tokenized by the teacher's tokenizer, token-level KD through fit
    rows = [{"prompt": "one two", "response": "three one"}, {"prompt": "two", "response": "one two three"}] * 4
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    data = load_lm_files(tmp_path / "train.jsonl", tmp_path / "train.jsonl", tokenizer=teacher.tokenizer, seq_len=6)
    assert data.test.y[0].tolist() == [-1, 5, 3, 1, -1, -1]  # "three one" + eos after the prompt "one two"
    student = load_causal_lm(tmp_path / "t")  # same tokenizer: the check passes
    check(teacher.tokenizer, student.tokenizer, teacher.vocab_size, student.vocab_size)
    terms = build_terms([{"name": "ce"}, {"name": "forward_kl", "chunk_size": 4}])
    result = fit(OfflineDistillation(student, teacher, terms), make_loader(data.train, 4, shuffle=True), None, QUIET)
    assert result.history[-1]["train_forward_kl"] > 0
    with pytest.raises(ModelError, match="not a local directory"):
        load_causal_lm(tmp_path / "missing")


def test_on_policy_sampling_is_reproducible_with_a_seed(addition) -> None:
    teacher = tiny(addition, width=32, seed=4)
    x, y = addition.train.x[:8], addition.train.y[:8]

    def samples(seed: int):
        scheme = OnPolicyDistillation(tiny(addition, seed=5), teacher, "forward_kl", lam=1.0,
                                      eos_id=addition.tokenizer.eos_token_id, seed=seed)
        return scheme.sample(x, y)

    (x1, y1), (x2, y2), (x3, _) = samples(0), samples(0), samples(1)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)
    # prompts kept; labels only on sampled tokens, which are the next inputs
    assert torch.equal(x1[:, :addition.train.prompt_len[0]], x[:, :addition.train.prompt_len[0]])
    rows, cols = torch.nonzero(y1[:, :-1] >= 0, as_tuple=True)
    assert torch.equal(y1[rows, cols], x1[rows, cols + 1])
    assert bool((y1[:, : addition.train.prompt_len[0] - 1] == -1).all())


def test_on_policy_fit_is_reproducible_and_mixes(addition) -> None:
    teacher = tiny(addition, width=32, seed=4)

    def run():
        scheme = OnPolicyDistillation(tiny(addition, seed=5), teacher, "jsd", lam=0.5, ce_weight=0.5,
                                      eos_id=addition.tokenizer.eos_token_id, seed=7)
        result = fit(scheme, make_loader(addition.train, 16, shuffle=True), None, QUIET)
        return scheme, result.history[-1]["train_loss"]

    (a, loss_a), (b, loss_b) = run(), run()
    assert loss_a == loss_b and 0 < a.on_policy_steps < a.steps and a.on_policy_steps == b.on_policy_steps
    with pytest.raises(ConfigError, match="lambda"):
        OnPolicyDistillation(tiny(addition), teacher, lam=1.5)


def test_sequence_level_kd_learns_the_teachers_outputs(addition) -> None:
    teacher = tiny(addition, width=32, seed=6)
    eos = addition.tokenizer.eos_token_id
    written = teacher_outputs(teacher, addition.train, eos)
    assert written.prompts == addition.train.prompts
    # the new responses are what the teacher generates greedily
    out = generate(teacher, *pad_prompts(addition.train.prompts[:3]), 4, eos_id=eos)
    for row in range(3):
        got = out.new[row, : int(out.lengths[row])].tolist()
        assert written.responses[row] == [t for t in got if t != eos][: len(written.responses[row])]
    result, _ = distill_sequence_level(tiny(addition), teacher, addition.train, None, QUIET, eos)
    assert result.history[-1]["train_ce"] > 0


def test_lm_demo_quick(tmp_path) -> None:
    from kdkit.families.lm.demo import run_lm_demo

    smaller = ["data.n_train=64", "data.n_transfer=32", "data.n_val=16", "data.n_test=16", "teacher.train.epochs=1",
               "train.epochs=1", "data.digits=2"]
    rows = run_lm_demo(seed=0, output_dir=tmp_path / "lm", quick=True, overrides=smaller)
    assert list(rows) == ["teacher", "student alone", "distilled student"]
    assert rows["teacher"]["params"] > 5 * rows["distilled student"]["params"]
    assert (tmp_path / "lm" / "table.md").read_text().count("\n") == 5
    assert {"agreement", "per_token_kl", "exact_match", "perplexity"} <= set(rows["distilled student"])


def test_cli_demo_task_lm_quick(tmp_path, capsys) -> None:
    from kdkit.cli import main

    try:
        main(["demo", "--task", "lm", "--quick", "-o", str(tmp_path / "lm")])
    except SystemExit as done:
        assert not done.code
    out = capsys.readouterr().out
    assert "| distilled student |" in out and "exact match" in out
    assert json.loads((tmp_path / "lm" / "results.json").read_text())["task"] == "lm"
