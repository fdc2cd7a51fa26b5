"""Vocabulary checks before any training: two tokenizers of one size but different tokens are refused by the
Python OfflineDistillation and by `kdkit train`; an hf_lm: model whose embedding table is padded past its
tokenizer predicts the tokenizer's ids only (sliced, with a note) and distils with a student of that size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from kdkit.errors import ModelError

transformers = pytest.importorskip("transformers")

WORDS = ["<pad>", "<eos>", "<unk>", "one", "two", "three"]


def _tokenizer(words: list[str]):
    from tokenizers import Tokenizer, models, pre_tokenizers

    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", eos_token="<eos>",
                                                pad_token="<pad>")


def _save_gpt2(folder: Path, words: list[str], rows: int, width: int = 16) -> Path:
    config = transformers.GPT2Config(vocab_size=rows, n_positions=16, n_embd=width, n_layer=1, n_head=2)
    transformers.set_seed(0)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    _tokenizer(words).save_pretrained(folder)
    return folder


def _terms(name: str = "forward_kl"):
    from kdkit.terms import build_terms

    return build_terms([{"name": "ce"}, {"name": name}])


def test_offline_distillation_refuses_two_tokenizers_of_one_size(tmp_path: Path) -> None:
    from kdkit.models.lm import load_causal_lm
    from kdkit.schemes import OfflineDistillation

    teacher = load_causal_lm(_save_gpt2(tmp_path / "t", WORDS, 6))
    swapped = WORDS[:3] + ["two", "one", "three"]
    student = load_causal_lm(_save_gpt2(tmp_path / "s", swapped, 6, width=8))
    with pytest.raises(ModelError, match=r"tokenizers differ at id 3: teacher 'one', student 'two'"):
        OfflineDistillation(student, teacher, _terms())
    OfflineDistillation(student, teacher, _terms("ce")[:1])  # no token divergence: nothing compared id by id


def test_offline_distillation_refuses_different_output_sizes() -> None:
    from kdkit.models.lm import LMTransformer
    from kdkit.schemes import OfflineDistillation

    with pytest.raises(ModelError, match=r"teacher predicts 7 tokens but the student 6"):
        OfflineDistillation(LMTransformer(6, 8, 1, 8, 2), LMTransformer(7, 8, 1, 8, 2), _terms("jsd"))


def test_padded_embedding_rows_are_sliced_to_the_tokenizer(tmp_path: Path) -> None:
    from kdkit.models.lm import LMTransformer, load_causal_lm
    from kdkit.schemes import OfflineDistillation

    with pytest.warns(UserWarning, match=r"note: the model has 8 token embeddings but its tokenizer 6 tokens"):
        teacher = load_causal_lm(_save_gpt2(tmp_path / "t", WORDS, 8))
    ids = torch.tensor([[3, 4, 5, 1]])
    full = teacher.model(input_ids=ids).logits
    assert teacher.vocab_size == 6 and teacher(ids).shape == (1, 4, 6)
    assert torch.equal(teacher(ids), full[..., :6])
    student = LMTransformer(6, 8, 1, 8, 2)
    scheme = OfflineDistillation(student, teacher, _terms())
    weighted, _raw, _out = scheme.losses(ids, torch.tensor([[4, 5, 1, -1]]), 0)
    assert all(torch.isfinite(v) for v in weighted.values())


def _config(tmp_path: Path, teacher: Path, student: str) -> Path:
    rows = [{"prompt": "one two", "response": "three one"}, {"prompt": "two", "response": "one two three"}] * 4
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    config = {
        "seed": 0, "output_dir": str(tmp_path / "run"),
        "data": {"name": "lm_files", "train_file": str(tmp_path / "train.jsonl"),
                 "test_file": str(tmp_path / "train.jsonl"), "seq_len": 8, "mode": "padded"},
        "teacher": {"name": f"hf_lm:{teacher}", "train": {"epochs": 1}},
        "student": {"name": student, **({"params": {"layers": 1, "width": 8, "heads": 2}}
                                        if student == "lm_transformer" else {})},
        "train": {"epochs": 1, "batch_size": 4, "lr": 1e-3, "progress": False},
        "distill": {"losses": [{"name": "ce"}, {"name": "forward_kl"}]},
    }
    path = tmp_path / "lm.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_cli_refuses_two_tokenizers_before_training(tmp_path: Path, capsys) -> None:
    from kdkit.cli import main

    teacher = _save_gpt2(tmp_path / "t", WORDS, 6)
    student = _save_gpt2(tmp_path / "s", WORDS[:3] + ["two", "one", "three"], 6, width=8)
    config = _config(tmp_path, teacher, f"hf_lm:{student}")
    capsys.readouterr()  # save_pretrained's progress bars
    with pytest.raises(SystemExit) as done:
        main(["train", str(config)])
    assert done.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after transformers' own loading bars
    assert "tokenizers differ at id 3: teacher 'one', student 'two'" in last
    assert not (tmp_path / "run" / "models").exists() and not list((tmp_path).glob("run/*teacher*"))


def test_padded_hf_teacher_and_a_student_of_its_tokenizer_build_without_error(tmp_path: Path) -> None:
    """Before slicing, this pair passed the checks and failed at the first distillation step."""
    from kdkit.families.lm.config import load_lm_config
    from kdkit.families.lm.run import build_lm_models

    with pytest.warns(UserWarning, match="sliced"):
        teacher = _save_gpt2(tmp_path / "t", WORDS, 8)
        data, _transfer, t, s = build_lm_models(load_lm_config(_config(tmp_path, teacher, "lm_transformer")))
    assert t.vocab_size == s.vocab_size == data.vocab_size == 6
    x, y = data.train.x[:2], data.train.y[:2]
    from kdkit.schemes import OfflineDistillation

    weighted, _raw, _out = OfflineDistillation(s, t, _terms()).losses(x, y, 0)
    assert torch.isfinite(sum(weighted.values()))
