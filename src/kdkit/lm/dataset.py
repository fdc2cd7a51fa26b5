"""Language-model rows: token ids (N, seq_len) with next-token labels, -1 (kdkit.labels.UNLABELLED) where a
position does not count (the prompt, the padding). The encoding layer below the data sources (kdkit.data.lm) and
the schemes that write new rows (sequence-level KD); it reads no file and knows no source."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset

from kdkit.errors import DataError
from kdkit.labels import UNLABELLED


class LMDataset(Dataset):
    """Rows (x, y) of LongTensor (seq_len,), plus per row the prompt length and, for pairs, the prompt and response
    ids (what generation starts from and what exact match compares against)."""

    def __init__(self, x: Tensor, y: Tensor, prompt_len: Tensor, prompts: list[list[int]] | None = None,
                 responses: list[list[int]] | None = None) -> None:
        self.x, self.y, self.prompt_len = x, y, prompt_len
        self.prompts, self.responses = prompts, responses

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.x[i], self.y[i]

    def subset(self, rows: Sequence[int]) -> LMDataset:
        rows = list(rows)
        prompts = [self.prompts[i] for i in rows] if self.prompts is not None else None
        responses = [self.responses[i] for i in rows] if self.responses is not None else None
        return LMDataset(self.x[rows], self.y[rows], self.prompt_len[rows], prompts, responses)

    @property
    def labelled_tokens(self) -> int:
        return int((self.y != UNLABELLED).sum())


def encode_pairs(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], seq_len: int, eos_id: int,
                 pad_id: int = 0) -> LMDataset:
    """Prompt/response id lists -> LMDataset; labels only on the response and the eos that ends it."""
    n = len(prompts)
    if n == 0:
        raise DataError("no prompt/response pairs: the dataset is empty")
    x = torch.full((n, seq_len), pad_id, dtype=torch.long)
    y = torch.full((n, seq_len), UNLABELLED, dtype=torch.long)
    for row, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        if len(p) == 0:
            raise DataError(f"pair {row}: empty prompt; a response needs at least one prompt token to follow")
        full = list(p) + list(r) + [eos_id]
        if len(full) - 1 > seq_len:
            raise DataError(f"pair {row} has {len(full) - 1} tokens (prompt + response + eos) but seq_len is "
                            f"{seq_len}; raise seq_len or shorten the texts")
        ids = torch.tensor(full, dtype=torch.long)
        x[row, :len(full) - 1] = ids[:-1]
        y[row, :len(full) - 1] = ids[1:]
        y[row, :len(p) - 1] = UNLABELLED  # predicting prompt tokens is not the task
    return LMDataset(x, y, torch.tensor([len(p) for p in prompts]), [list(p) for p in prompts],
                     [list(r) for r in responses])


def encode_texts(texts: Sequence[Sequence[int]], seq_len: int, eos_id: int, pad_id: int = 0,
                 mode: Literal["packed", "padded"] = "packed") -> LMDataset:
    """Raw token id lists -> LMDataset with every real token labelled. packed: joined with eos, cut into rows of
    seq_len + 1 ids (the last incomplete row dropped); padded: one text (+ eos) per row, truncated."""
    if mode == "packed":
        stream = [i for t in texts for i in (*t, eos_id)]
        rows = len(stream) // (seq_len + 1)
        if rows == 0:
            raise DataError(f"the texts hold {len(stream)} tokens, fewer than one packed row of seq_len + 1 = "
                            f"{seq_len + 1}; add text or lower seq_len")
        block = torch.tensor(stream[: rows * (seq_len + 1)], dtype=torch.long).view(rows, seq_len + 1)
        return LMDataset(block[:, :-1].clone(), block[:, 1:].clone(), torch.zeros(rows, dtype=torch.long))
    if mode != "padded":
        raise DataError(f"unknown mode '{mode}'; choose packed or padded")
    if not texts:
        raise DataError("no texts: the dataset is empty")
    x = torch.full((len(texts), seq_len), pad_id, dtype=torch.long)
    y = torch.full((len(texts), seq_len), UNLABELLED, dtype=torch.long)
    for row, t in enumerate(texts):
        ids = torch.tensor((list(t) + [eos_id])[: seq_len + 1], dtype=torch.long)
        x[row, :len(ids) - 1], y[row, :len(ids) - 1] = ids[:-1], ids[1:]
    return LMDataset(x, y, torch.zeros(len(texts), dtype=torch.long))


def concat(a: LMDataset, b: LMDataset) -> LMDataset:
    """The rows of a, then those of b (prompts and responses too)."""
    return LMDataset(torch.cat([a.x, b.x]), torch.cat([a.y, b.y]), torch.cat([a.prompt_len, b.prompt_len]),
                     (a.prompts or []) + (b.prompts or []), (a.responses or []) + (b.responses or []))


__all__ = ["LMDataset", "concat", "encode_pairs", "encode_texts"]
