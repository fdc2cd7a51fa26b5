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

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from kdkit.errors import DataError
from kdkit.lm.dataset import LMDataset
from kdkit.lm.generate import generate, pad_prompts
from kdkit.losses.forward_kl import forward_kl_terms
from kdkit.measure.cost import model_device


@torch.no_grad()
def lm_units(model: nn.Module, data: LMDataset, teacher: nn.Module | None = None, batch_size: int = 256,
             device: torch.device | None = None) -> dict[str, np.ndarray]:
    """Per row of `data` (a test problem or a text): labelled `tokens`, summed `nll` and `correct` tokens of
    `model`, and with `teacher` the `agree` count and summed `kl`. Sums, not means, so that any set of rows
    (a bootstrap resample, the whole split) gives its metrics by adding them up; the run directory keeps them."""
    device = device or model_device(model)
    states = [(m, m.training) for m in (model, teacher) if m is not None]
    for m, _ in states:
        m.eval()
    parts: dict[str, list[np.ndarray]] = {"tokens": [], "nll": [], "correct": []}
    if teacher is not None:
        parts.update(agree=[], kl=[])
    for x, y in DataLoader(data, batch_size=batch_size):
        x, y = x.to(device), y.to(device)
        valid = y >= 0
        log_s = torch.log_softmax(model(x).float(), -1)
        pred = log_s.argmax(-1)
        target = y.clamp_min(0)
        per_token = {"tokens": valid.double(), "nll": -log_s.gather(-1, target[..., None]).squeeze(-1).double(),
                     "correct": (pred == target).double()}
        if teacher is not None:
            log_t = torch.log_softmax(teacher(x).float(), -1)
            per_token["agree"] = (pred == log_t.argmax(-1)).double()
            per_token["kl"] = forward_kl_terms(log_t, log_s).sum(-1).double()  # 0 log 0 = 0 at masked ids
        for key, value in per_token.items():
            parts[key].append(torch.where(valid, value, 0.0).sum(1).cpu().numpy())
    for m, mode in states:
        m.train(mode)
    return {key: np.concatenate(chunks) if chunks else np.zeros(0) for key, chunks in parts.items()}


def summarize_units(units: dict[str, np.ndarray]) -> dict[str, float]:
    """The metrics of a set of rows from their lm_units sums (see the module docstring for the formulas)."""
    count = float(units["tokens"].sum())
    if count == 0:
        raise DataError("no labelled tokens to score: every label is -1")
    out = {"perplexity": math.exp(float(units["nll"].sum()) / count),
           "token_accuracy": float(units["correct"].sum()) / count, "tokens": count}
    if "agree" in units:
        out["agreement"] = float(units["agree"].sum()) / count
        out["per_token_kl"] = float(units["kl"].sum()) / count
    if "exact" in units:
        out["exact_match"] = float(units["exact"].mean())
    return out


def lm_report(model: nn.Module, data: LMDataset, teacher: nn.Module | None = None, batch_size: int = 256,
              device: torch.device | None = None) -> dict[str, float]:
    """perplexity and token_accuracy of `model`; with `teacher`, agreement and per_token_kl too."""
    return summarize_units(lm_units(model, data, teacher, batch_size, device))


@torch.no_grad()
def exact_hits(model: nn.Module, data: LMDataset, eos_id: int, pad_id: int = 0, batch_size: int = 256,
               max_new_tokens: int | None = None, device: torch.device | None = None) -> tuple[np.ndarray, int, float]:
    """Greedy generation from each prompt of a prompt/response dataset, compared with its response + eos: per
    prompt 1.0 (equal) or 0.0, the generated token count and the generation's wall time in seconds."""
    if data.prompts is None or data.responses is None:
        raise DataError("exact match needs prompt/response data; this dataset holds raw text")
    device = device or model_device(model)
    longest = max(len(r) for r in data.responses) + 1
    max_new = max_new_tokens or longest
    hits: list[float] = []
    tokens, seconds = 0, 0.0
    for start in range(0, len(data), batch_size):
        prompts = data.prompts[start:start + batch_size]
        ids, lengths = pad_prompts(prompts, pad_id)
        out = generate(model, ids.to(device), lengths.to(device), max_new, eos_id=eos_id, pad_id=pad_id)
        for row, response in enumerate(data.responses[start:start + batch_size]):
            want = list(response) + [eos_id]
            hits.append(float(out.new[row, :len(want)].tolist() == want))
        tokens += int(out.lengths.sum())
        seconds += out.seconds
    return np.asarray(hits), tokens, seconds


def exact_match(model: nn.Module, data: LMDataset, eos_id: int, pad_id: int = 0, batch_size: int = 256,
                max_new_tokens: int | None = None, device: torch.device | None = None) -> dict[str, float]:
    """Share of prompts answered exactly (greedy) and the generation speed in tokens per second."""
    hits, tokens, seconds = exact_hits(model, data, eos_id, pad_id, batch_size, max_new_tokens, device)
    return {"exact_match": float(hits.mean()), "tokens_per_s": tokens / max(seconds, 1e-9)}


def lm_row(model: nn.Module, test: LMDataset, eos_id: int, teacher: nn.Module | None = None,
           pad_id: int = 0, **kwargs: Any) -> dict[str, float]:
    """Everything the LM table shows for one model: lm_report + exact_match (when the data has prompts) + params."""
    row = lm_report(model, test, teacher, **kwargs)
    if test.prompts is not None:
        row.update(exact_match(model, test, eos_id, pad_id))
    row["params"] = float(sum(p.numel() for p in model.parameters()))
    return row


__all__ = ["exact_hits", "exact_match", "lm_report", "lm_row", "lm_units", "summarize_units"]
