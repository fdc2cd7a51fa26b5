"""kdkit's divergences inside transformers.Trainer, with tiny GPT-2 models built here (nothing downloaded): the
loss equals its formula on Hugging Face labels (-100, shifted by the model), the fused head path equals the plain
one, a few Trainer steps move the student and not the teacher, vocabularies are checked before training, and
`import kdkit` does not load transformers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kdkit.errors import ModelError
from kdkit.losses import JSD, ForwardKL

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from kdkit.lm.hf_trainer import DistillationTrainer, distillation_loss  # noqa: E402


def _gpt2(vocab: int, width: int, seed: int) -> torch.nn.Module:
    transformers.set_seed(seed)
    config = transformers.GPT2Config(vocab_size=vocab, n_positions=16, n_embd=width, n_layer=1, n_head=2,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=1, eos_token_id=1)
    return transformers.GPT2LMHeadModel(config)


def _batch(vocab: int = 11, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (3, 7), generator=g)
    labels = ids.clone()
    labels[0, :3] = -100  # a prompt
    labels[2, 5:] = -100  # padding
    attention = torch.ones_like(ids)
    attention[2, 5:] = 0
    return {"input_ids": ids, "attention_mask": attention, "labels": labels}


def test_loss_is_ce_plus_the_divergence_on_the_labelled_next_tokens() -> None:
    student, teacher, batch = _gpt2(11, 16, 0), _gpt2(11, 32, 1), _batch()
    loss, parts, _out = distillation_loss(student, teacher, batch, ForwardKL(T=2.0), weight=0.7, ce_weight=0.3)
    s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    with torch.no_grad():
        t = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    valid = batch["labels"][:, 1:] != -100
    p_t = torch.softmax(t[valid] / 2.0, -1)
    kl = 4.0 * (p_t * (p_t.log() - torch.log_softmax(s[valid] / 2.0, -1))).sum(-1).mean()
    hf_ce = student(**batch).loss  # the model's own shifted cross-entropy
    assert parts["ce"].item() == pytest.approx(hf_ce.item(), rel=1e-5)
    assert parts["divergence"].item() == pytest.approx(kl.item(), rel=1e-5)
    assert loss.item() == pytest.approx(0.3 * hf_ce.item() + 0.7 * kl.item(), rel=1e-5)


def test_fused_equals_plain_in_value_and_gradient() -> None:
    teacher, batch = _gpt2(11, 32, 1), _batch(seed=1)
    values, grads = [], []
    for fused in (False, True):
        student = _gpt2(11, 16, 0)
        loss, _parts, _out = distillation_loss(student, teacher, batch, JSD(beta=0.3), ce_weight=0.5, fused=fused,
                                               chunk_size=4)
        loss.backward()
        values.append(loss.item())
        grads.append(torch.cat([p.grad.flatten() for p in student.parameters()]))
    assert values[1] == pytest.approx(values[0], rel=1e-5)
    assert torch.allclose(grads[1], grads[0], rtol=1e-4, atol=1e-6)


def _dataset(n: int = 12) -> list[dict[str, torch.Tensor]]:
    batch = _batch(seed=2)
    return [{k: v[i % 3] for k, v in batch.items()} for i in range(n)]


def _args(tmp_path: Path) -> transformers.TrainingArguments:
    return transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4,
                                          learning_rate=1e-2, report_to=[], save_strategy="no", use_cpu=True,
                                          logging_steps=1, disable_tqdm=True, seed=0)


@pytest.mark.parametrize("fused", [False, True])
def test_trainer_distils_into_the_student_only(tmp_path: Path, fused: bool) -> None:
    student, teacher = _gpt2(11, 16, 0), _gpt2(11, 32, 1)
    before_s = [p.detach().clone() for p in student.parameters()]
    before_t = [p.detach().clone() for p in teacher.parameters()]
    trainer = DistillationTrainer(model=student, teacher_model=teacher, divergence="jsd",
                                  divergence_options={"beta": 0.5}, ce_weight=0.5, fused=fused, args=_args(tmp_path),
                                  train_dataset=_dataset())
    result = trainer.train()
    assert result.global_step == 3 and torch.isfinite(torch.tensor(result.training_loss))
    assert any(not torch.equal(a, b) for a, b in zip(before_s, student.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(before_t, teacher.parameters(), strict=True))


def test_vocabularies_are_checked_before_training(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models

    with pytest.raises(ModelError, match=r"teacher predicts 13 tokens but the student 11; give the tokenizer"):
        DistillationTrainer(model=_gpt2(11, 16, 0), teacher_model=_gpt2(13, 16, 1), args=_args(tmp_path),
                            train_dataset=_dataset())
    words = {f"w{i}": i for i in range(11)}
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(words, unk_token="w0")),
                                               pad_token="w0")
    trainer = DistillationTrainer(model=_gpt2(11, 16, 0), teacher_model=_gpt2(13, 16, 1), args=_args(tmp_path),
                                  train_dataset=_dataset(), processing_class=tok)  # 2 padding rows: sliced
    assert trainer.vocab_size == 11 and trainer.train().global_step == 3


def test_import_kdkit_does_not_load_transformers() -> None:
    code = "import sys, kdkit, kdkit.lm; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
