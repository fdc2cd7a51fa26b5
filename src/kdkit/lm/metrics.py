"""Language-model metrics, streamed batch by batch over the labelled tokens (labels >= 0) so memory stays bounded
whatever the vocabulary:

    perplexity       exp( -sum log p_s(y_i) / #tokens )                      (Jelinek et al. 1977)
    token_accuracy   share of labelled tokens whose argmax is the label
    agreement        share of labelled tokens where student and teacher argmax agree (next-token top-1)
    per_token_kl     mean over labelled tokens of KL(p_t || p_s) at temperature 1 (nats)
    exact_match      share of prompts whose greedy continuation (up to eos) equals the reference response
    tokens_per_s     generated tokens per second in that greedy generation (batched, no key/value cache)
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from kdkit.data.lm import LMDataset
from kdkit.errors import DataError
from kdkit.lm.generate import generate, pad_prompts
from kdkit.metrics import model_device


@torch.no_grad()
def lm_report(model: nn.Module, data: LMDataset, teacher: nn.Module | None = None, batch_size: int = 256,
              device: torch.device | None = None) -> dict[str, float]:
    """perplexity and token_accuracy of `model`; with `teacher`, agreement and per_token_kl too."""
    device = device or model_device(model)
    states = [(m, m.training) for m in (model, teacher) if m is not None]
    for m, _ in states:
        m.eval()
    nll = correct = agree = kl = 0.0
    count = 0
    for x, y in DataLoader(data, batch_size=batch_size):
        x, y = x.to(device), y.to(device)
        valid = y >= 0
        if not bool(valid.any()):
            continue
        log_s = torch.log_softmax(model(x).float(), -1)[valid]
        target = y[valid]
        nll += float(-log_s.gather(-1, target[:, None]).sum())
        correct += float((log_s.argmax(-1) == target).sum())
        if teacher is not None:
            log_t = torch.log_softmax(teacher(x).float(), -1)[valid]
            agree += float((log_s.argmax(-1) == log_t.argmax(-1)).sum())
            kl += float((log_t.exp() * (log_t - log_s)).sum())
        count += int(valid.sum())
    for m, mode in states:
        m.train(mode)
    if count == 0:
        raise DataError("no labelled tokens to score: every label is -1")
    out = {"perplexity": math.exp(nll / count), "token_accuracy": correct / count, "tokens": float(count)}
    if teacher is not None:
        out["agreement"] = agree / count
        out["per_token_kl"] = kl / count
    return out


@torch.no_grad()
def exact_match(model: nn.Module, data: LMDataset, eos_id: int, pad_id: int = 0, batch_size: int = 256,
                max_new_tokens: int | None = None, device: torch.device | None = None) -> dict[str, float]:
    """Greedy generation from each prompt of a prompt/response dataset, compared with its response + eos."""
    if data.prompts is None or data.responses is None:
        raise DataError("exact match needs prompt/response data; this dataset holds raw text")
    device = device or model_device(model)
    longest = max(len(r) for r in data.responses) + 1
    max_new = max_new_tokens or longest
    hits, tokens, seconds = 0, 0, 0.0
    for start in range(0, len(data), batch_size):
        prompts = data.prompts[start:start + batch_size]
        ids, lengths = pad_prompts(prompts, pad_id)
        out = generate(model, ids.to(device), lengths.to(device), max_new, eos_id=eos_id, pad_id=pad_id)
        for row, response in enumerate(data.responses[start:start + batch_size]):
            want = list(response) + [eos_id]
            hits += out.new[row, :len(want)].tolist() == want
        tokens += int(out.lengths.sum())
        seconds += out.seconds
    return {"exact_match": hits / len(data), "tokens_per_s": tokens / max(seconds, 1e-9)}


def lm_row(model: nn.Module, test: LMDataset, eos_id: int, teacher: nn.Module | None = None,
           pad_id: int = 0, **kwargs: Any) -> dict[str, float]:
    """Everything the LM table shows for one model: lm_report + exact_match (when the data has prompts) + params."""
    row = lm_report(model, test, teacher, **kwargs)
    if test.prompts is not None:
        row.update(exact_match(model, test, eos_id, pad_id))
    row["params"] = float(sum(p.numel() for p in model.parameters()))
    return row


__all__ = ["exact_match", "lm_report", "lm_row"]
