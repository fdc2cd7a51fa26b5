"""Language-model runs in seconds, for the tests: configs/lm_addition.yaml shrunk, and tiny hf_lm: folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["<pad>", "<eos>", "<unk>", "one", "two", "three"]  # the tiny GPT-2 folders' word-level vocabulary
SHRUNK = {"digits": 2, "n_train": 64, "n_transfer": 32, "n_val": 16, "n_test": 24}


def shrunk_config(tmp: Path, seed: int, **distill: object) -> Path:
    """configs/lm_addition.yaml with a few problems, one epoch and tiny models, written under tmp."""
    raw = yaml.safe_load((ROOT / "configs" / "lm_addition.yaml").read_text())
    raw["seed"], raw["output_dir"] = seed, str(tmp / f"run{seed}")
    raw["data"].update(SHRUNK)
    raw["train"]["epochs"] = 1
    raw["teacher"]["train"] = {"epochs": 2}
    raw["teacher"]["params"] = {"layers": 1, "width": 32, "heads": 2}
    raw["student"]["params"] = {"layers": 1, "width": 8, "heads": 2}
    raw["distill"].update(distill)
    path = tmp / f"lm{seed}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def gpt2_folders(tmp: Path) -> dict[str, Path]:
    """A tiny GPT-2 teacher and student saved with one word-level tokenizer (the hf_lm: path), and JSONL rows."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", eos_token="<eos>",
                                               pad_token="<pad>")
    for name, width in (("teacher", 32), ("student", 8)):
        config = transformers.GPT2Config(vocab_size=len(WORDS), n_positions=16, n_embd=width, n_layer=1, n_head=2)
        transformers.set_seed(0)
        transformers.GPT2LMHeadModel(config).save_pretrained(tmp / name)
        tok.save_pretrained(tmp / name)
    rows = [{"prompt": "one two", "response": "three one"}, {"prompt": "two", "response": "one two three"}] * 8
    (tmp / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return {"teacher": tmp / "teacher", "student": tmp / "student", "rows": tmp / "train.jsonl"}
