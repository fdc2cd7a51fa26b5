"""Autoregressive generation for any model mapping ids (N, L) to logits (N, L, V) (lm_transformer, hf_lm:).

Prompts of different lengths sit right-padded in one buffer; at step k, row i writes its token at position
prompt_len[i] + k, read from the logits at the position before. Causal attention never sees the right side, so
the padding and other rows' tokens change nothing. The whole buffer is re-run every step (no key/value cache):
simple and exact, meant for small models and short answers. Sampling draws from a torch.Generator, so the same
seed gives the same tokens.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kdkit.errors import ConfigError


@dataclass
class Generated:
    """ids: (N, max_prompt + max_new) prompt then generated tokens, pad elsewhere; new: (N, max_new) the
    generated tokens (pad after eos); lengths: generated tokens per row, eos included; seconds: wall time."""

    ids: Tensor
    new: Tensor
    prompt_len: Tensor
    lengths: Tensor
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return float(self.lengths.sum()) / max(self.seconds, 1e-9)


def pad_prompts(prompts: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[Tensor, Tensor]:
    """Right-padded (N, max_len) ids and the lengths (N,)."""
    lengths = torch.tensor([len(p) for p in prompts], dtype=torch.long)
    ids = torch.full((len(prompts), int(lengths.max())), pad_id, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, :len(p)] = torch.as_tensor(list(p), dtype=torch.long)
    return ids, lengths


@torch.no_grad()
def generate(model: nn.Module, prompts: Tensor, prompt_len: Tensor, max_new_tokens: int, eos_id: int | None = None,
             pad_id: int = 0, greedy: bool = True, temperature: float = 1.0,
             generator: torch.Generator | None = None) -> Generated:
    """Continue each prompt (right-padded rows of `prompts`, true lengths `prompt_len`) by up to max_new_tokens,
    greedily or by sampling softmax(logits / temperature) with `generator`; a row stops after eos_id."""
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not greedy and temperature <= 0:
        raise ConfigError(f"sampling temperature must be > 0, got {temperature}")
    was_training = model.training
    model.eval()
    device = prompts.device
    n = prompts.shape[0]
    prompt_len = prompt_len.to(device)
    if bool((prompt_len < 1).any()):
        raise ConfigError("every prompt needs at least one token to generate from")
    width = int(prompt_len.max()) + max_new_tokens
    buf = torch.full((n, width), pad_id, dtype=torch.long, device=device)
    buf[:, :prompts.shape[1]] = prompts[:, :width]
    rows = torch.arange(n, device=device)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    new = torch.full((n, max_new_tokens), pad_id, dtype=torch.long, device=device)
    lengths = torch.zeros(n, dtype=torch.long, device=device)
    start = time.perf_counter()
    for step in range(max_new_tokens):
        pos = prompt_len + step
        logits = model(buf[:, : int(pos.max())])[rows, pos - 1].float()
        if greedy:
            token = logits.argmax(-1)
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            token = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(device)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        buf[rows, pos] = token
        new[:, step] = token
        lengths += (~done).long()
        if eos_id is not None:
            done |= token == eos_id
            if bool(done.all()):
                break
    seconds = time.perf_counter() - start
    model.train(was_training)
    return Generated(buf, new, prompt_len, lengths, seconds)


__all__ = ["Generated", "generate", "pad_prompts"]
