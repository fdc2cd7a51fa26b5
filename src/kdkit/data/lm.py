"""Language-model data: sequences of token ids with next-token labels, for causal LMs (kdkit.models.lm).

A row is ``x = ids[:-1]`` and ``y = ids[1:]`` (the labels are the inputs shifted by one, so position l of the
logits predicts y[l]), padded on the right to ``seq_len`` with the pad id in x and -1 in y. Prompt/response pairs
get -1 on every label inside the prompt, so the loss, the metrics and the divergences count only the response
(and its end-of-sequence token). Raw text is labelled everywhere, either packed (all texts joined with the
end-of-sequence id and cut into rows of seq_len + 1 ids, no padding) or padded (one text per row, truncated).

Sources: :func:`synthetic_addition` (built in, generated offline: multi-digit addition written as text, scored by
exact match of the generated answer) and :func:`load_lm_files` (``.txt``: one text per non-empty line; ``.jsonl``:
``{"prompt", "response"}`` pairs or ``{"text"}`` rows). Tokens come from a :class:`CharTokenizer` built on the
training texts, or from any Hugging Face tokenizer (``load_causal_lm(folder).tokenizer``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor

from kdkit.config.types import LaxPath
from kdkit.data.source import LM, SourceOptions
from kdkit.errors import DataError
from kdkit.lm.dataset import LMDataset, encode_pairs, encode_texts


class CharTokenizer:
    """One id per character: 0 = <pad>, 1 = <eos>, 2 = <unk>, then the characters in sorted order."""

    SPECIALS = ("<pad>", "<eos>", "<unk>")
    pad_token_id, eos_token_id, unk_token_id = 0, 1, 2

    def __init__(self, chars: Sequence[str]) -> None:
        self.tokens = list(self.SPECIALS) + sorted(set(chars) - set(self.SPECIALS))
        self.ids = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def from_texts(cls, texts: Sequence[str]) -> CharTokenizer:
        return cls(sorted({c for text in texts for c in text}))

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.ids)

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> str | list[str]:
        return self.tokens[ids] if isinstance(ids, int) else [self.tokens[i] for i in ids]

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [self.ids.get(c, self.unk_token_id) for c in text]

    def decode(self, ids: Sequence[int] | Tensor, stop_at_eos: bool = True) -> str:
        out = []
        for i in (ids.tolist() if isinstance(ids, Tensor) else ids):
            if i == self.eos_token_id and stop_at_eos:
                break
            if i >= len(self.SPECIALS):
                out.append(self.tokens[i])
        return "".join(out)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"kind": "char", "tokens": self.tokens}))

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        data = json.loads(Path(path).read_text())
        tok = cls([])
        tok.tokens, tok.ids = list(data["tokens"]), {t: i for i, t in enumerate(data["tokens"])}
        return tok


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def _eos(tokenizer: Any) -> int:
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise DataError("the tokenizer has no end-of-sequence token (eos_token_id); set one before building LM data")
    return int(eos)


def _pad(tokenizer: Any) -> int:
    pad = getattr(tokenizer, "pad_token_id", None)
    return int(pad) if pad is not None else _eos(tokenizer)


@dataclass
class LMBundle:
    """Train/val/test splits of one LM task and the tokenizer that made them; `num_classes` is the vocabulary."""

    train: LMDataset
    val: LMDataset
    test: LMDataset
    tokenizer: Any
    seq_len: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    num_classes = vocab_size

    @property
    def input_shape(self) -> tuple[int]:
        return (self.seq_len,)

    @property
    def model_kwargs(self) -> dict[str, Any]:
        return {"vocab_size": self.vocab_size}


def addition_pair(a: int, b: int, digits: int, reverse: bool = True) -> tuple[str, str]:
    """("0123+0456=", answer): operands zero-padded to `digits`, the sum to digits + 1, least significant digit
    first when `reverse` (the order in which carries are computed)."""
    total = f"{a + b:0{digits + 1}d}"
    return f"{a:0{digits}d}+{b:0{digits}d}=", total[::-1] if reverse else total


def synthetic_addition(n_train: int = 8000, n_val: int = 500, n_test: int = 1000, digits: int = 3, seed: int = 0,
                       reverse: bool = True) -> LMBundle:
    """Multi-digit addition as text ("123+456=" -> "9750" reversed, then <eos>), generated offline; every split
    holds distinct problems, none shared between splits. Scored by exact match of the generated answer: getting
    every digit (and every carry) right takes more capacity than a small model has."""
    if digits < 1 or n_train < 1 or n_val < 1 or n_test < 1:
        raise DataError("synthetic_addition needs digits >= 1 and at least one problem per split")
    total = n_train + n_val + n_test
    space = 10 ** (2 * digits)
    if total > space // 2:
        raise DataError(f"{total} distinct problems requested but {digits}-digit addition has {space}; raise digits")
    rng = random.Random(seed)
    seen: set[int] = set()
    while len(seen) < total:
        seen.add(rng.randrange(space))
    codes = sorted(seen)
    rng.shuffle(codes)
    tok = CharTokenizer("0123456789+=")
    splits = []
    for part in (codes[:n_train], codes[n_train:n_train + n_val], codes[n_train + n_val:]):
        pairs = [addition_pair(c // 10**digits, c % 10**digits, digits, reverse) for c in part]
        splits.append(encode_pairs([tok.encode(p) for p, _ in pairs], [tok.encode(r) for _, r in pairs],
                                   seq_len=3 * digits + 3, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id))
    return LMBundle(*splits, tokenizer=tok, seq_len=3 * digits + 3,
                    info={"task": "addition", "digits": digits, "reverse": reverse})


def _read_rows(path: Path) -> list[dict[str, Any] | str]:
    if not path.is_file():
        raise DataError(f"LM data file {path} does not exist")
    if path.suffix == ".jsonl":
        rows: list[dict[str, Any] | str] = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}:{n}: not valid JSON ({err.msg})") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{n}: each line must be a JSON object")
                rows.append(row)
        return rows
    if path.suffix in (".txt", ".text", ""):
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    raise DataError(f"{path}: LM data must be .txt (one text per line) or .jsonl; got '{path.suffix}'")


def _split_rows(rows: list[dict[str, Any] | str], path: Path, prompt_key: str, response_key: str,
                text_key: str) -> tuple[list[tuple[str, str]], list[str]]:
    pairs, texts = [], []
    for n, row in enumerate(rows, 1):
        if isinstance(row, str):
            texts.append(row)
        elif prompt_key in row and response_key in row:
            pairs.append((str(row[prompt_key]), str(row[response_key])))
        elif text_key in row:
            texts.append(str(row[text_key]))
        else:
            raise DataError(f"{path}: row {n} has neither '{prompt_key}'/'{response_key}' nor '{text_key}'; keys: "
                            f"{sorted(row)}")
    if pairs and texts:
        raise DataError(f"{path} mixes prompt/response rows and raw-text rows; use one kind per file")
    return pairs, texts


def load_lm_files(train_file: str | Path, test_file: str | Path, val_file: str | Path | None = None,
                  tokenizer: Any = None, seq_len: int = 128, mode: Literal["packed", "padded"] = "packed",
                  prompt_key: str = "prompt", response_key: str = "response", text_key: str = "text",
                  val_fraction: float = 0.1, seed: int = 0) -> LMBundle:
    """Plain-text or JSONL files -> LMBundle. Pairs are padded per row with labels only on the response; raw text
    is `mode` (packed or padded). Without `tokenizer` a CharTokenizer is built on the training file. Without
    `val_file`, `val_fraction` of the training rows (by seed) are held out."""
    tokenizer = tokenizer or CharTokenizer.from_texts(
        [t for row in _read_rows(Path(train_file)) for t in
         ([row] if isinstance(row, str) else [str(v) for k, v in row.items() if k in (prompt_key, response_key,
                                                                                        text_key)])])
    eos, pad = _eos(tokenizer), _pad(tokenizer)

    def build(path: Path) -> LMDataset:
        pairs, texts = _split_rows(_read_rows(path), path, prompt_key, response_key, text_key)
        if pairs:
            return encode_pairs([_encode(tokenizer, p) for p, _ in pairs], [_encode(tokenizer, r) for _, r in pairs],
                                seq_len, eos, pad)
        return encode_texts([_encode(tokenizer, t) for t in texts], seq_len, eos, pad, mode)

    train, test = build(Path(train_file)), build(Path(test_file))
    if val_file is not None:
        val = build(Path(val_file))
    else:
        if not 0 < val_fraction < 1:
            raise DataError(f"val_fraction must be in (0, 1) without a val_file, got {val_fraction}")
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed)).tolist()
        cut = max(1, int(round(val_fraction * len(train))))
        if cut >= len(train):
            raise DataError(f"{train_file} has {len(train)} rows: too few to hold out a validation split")
        train, val = train.subset(order[cut:]), train.subset(order[:cut])
    return LMBundle(train, val, test, tokenizer, seq_len, info={"task": "files", "mode": mode})


def addition_source(cfg: Any, seed: int, tokenizer: Any = None) -> tuple[LMBundle, LMDataset | None]:
    """`data.name: synthetic_addition` of an LM config: n_train labelled problems and, after them, n_transfer
    more whose answers the teacher will write (the same draw as one split of n_train + n_transfer, so a run with
    transfer prompts keeps the labelled problems of a run without)."""
    if tokenizer is not None:
        raise DataError("synthetic_addition has its own character tokenizer; use lm_transformer models (an hf_lm: "
                        "model brings another tokenizer) or data.name: lm_files")
    data = synthetic_addition(cfg.n_train + cfg.n_transfer, cfg.n_val, cfg.n_test, cfg.digits, seed, cfg.reverse)
    transfer = data.train.subset(range(cfg.n_train, cfg.n_train + cfg.n_transfer)) if cfg.n_transfer else None
    data.train = data.train.subset(range(cfg.n_train))
    return data, transfer


def files_source(cfg: Any, seed: int, tokenizer: Any = None) -> tuple[LMBundle, LMDataset | None]:
    """`data.name: lm_files` of an LM config: load_lm_files with the config's keys (the teacher's tokenizer when it
    is an hf_lm: model, else characters of the training file); no transfer prompts."""
    data = load_lm_files(cfg.train_file, cfg.test_file, cfg.val_file, tokenizer, cfg.seq_len, cfg.mode,
                         cfg.prompt_key, cfg.response_key, cfg.text_key, cfg.val_fraction, seed)
    return data, None


class SyntheticAdditionSource(SourceOptions):
    """synthetic_addition (language models): generated multi-digit additions, answered after '='."""

    name: Literal["synthetic_addition"] = "synthetic_addition"
    digits: int = Field(3, ge=1, description="digits per operand")
    n_train: int = Field(2000, ge=1, description="labelled training problems")
    n_transfer: int = Field(0, ge=0, description="extra prompts the teacher answers (scheme sequence_level only)")
    n_val: int = Field(500, ge=1, description="validation problems")
    n_test: int = Field(1000, ge=1, description="test problems (exact match)")
    reverse: bool = Field(True, description="write the sum least significant digit first")
    family = LM

    def load(self, seed: int, tokenizer: Any = None) -> tuple[LMBundle, LMDataset | None]:
        return addition_source(self, seed, tokenizer)


class LMFilesSource(SourceOptions):
    """lm_files (language models): your .txt (one text per line) or .jsonl ({prompt, response} or {text} rows)."""

    name: Literal["lm_files"] = "lm_files"
    train_file: LaxPath | None = Field(None, description=".txt (one text per line) or .jsonl ({prompt, response} "
                                       "or {text} rows)")
    test_file: LaxPath | None = Field(None, description="test texts, same format")
    val_file: LaxPath | None = Field(None, description="validation texts (else val_fraction of train)")
    seq_len: int = Field(128, ge=2, description="tokens per row")
    mode: Literal["packed", "padded"] = Field("packed", description="raw text packed or one per row")
    prompt_key: str = Field("prompt", description="JSONL key of the prompt")
    response_key: str = Field("response", description="JSONL key of the response")
    text_key: str = Field("text", description="JSONL key of a raw text")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="share of train held out")
    family = LM

    @model_validator(mode="after")
    def _files(self) -> LMFilesSource:
        for key in ("train_file", "test_file", "val_file"):
            path = getattr(self, key)
            if path is None and key != "val_file":
                raise ValueError(f"lm_files needs {key} (.txt or .jsonl)")
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{key}: file not found: {path}")
        return self

    def load(self, seed: int, tokenizer: Any = None) -> tuple[LMBundle, LMDataset | None]:
        return files_source(self, seed, tokenizer)


__all__ = ["CharTokenizer", "LMBundle", "LMDataset", "LMFilesSource", "SyntheticAdditionSource", "addition_pair",
           "addition_source", "encode_pairs", "encode_texts", "files_source", "load_lm_files", "synthetic_addition"]
