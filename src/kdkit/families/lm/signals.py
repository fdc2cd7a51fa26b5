"""The diagnosis signals (kdkit.diagnosis) of a language-model run, per labelled token: the teacher's mean top
probability and entropy, token accuracy, and next-token agreement of each student with the teacher, on the labelled
training rows (up to MAX_ROWS of them, evenly spaced, to bound the cost) and on the validation split.

One pass per split runs the three models on the same batch, so each model's logits are read once and no
(rows, length, vocabulary) array is kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from kdkit.diagnosis import Signals, capacity_ratio
from kdkit.lm.dataset import LMDataset

MAX_ROWS = 2_000  # training rows read for the train signals (the validation split is read whole)
SUMS = ("tokens", "teacher_correct", "alone_correct", "confidence", "entropy", "agree_alone", "agree_kd")


def evenly_spaced(data: LMDataset, limit: int = MAX_ROWS) -> LMDataset:
    """At most `limit` rows of `data`, evenly spaced (all of them when there are fewer)."""
    if len(data) <= limit:
        return data
    return data.subset(np.linspace(0, len(data) - 1, limit).round().astype(int).tolist())


@torch.no_grad()
def token_sums(models: dict[str, nn.Module], data: LMDataset, device: torch.device,
               batch_size: int = 256) -> dict[str, float]:
    """Sums over the labelled tokens of `data` (see SUMS): the teacher's correct tokens, top probability and entropy
    (nats), each student's correct tokens and its agreement with the teacher's next token."""
    states = [(m, m.training) for m in models.values()]
    for model, _ in states:
        model.eval().to(device)
    sums = dict.fromkeys(SUMS, 0.0)
    for x, y in DataLoader(data, batch_size=batch_size):
        x, y = x.to(device), y.to(device)
        valid = y >= 0
        log_t = torch.log_softmax(models["teacher"](x).float(), -1)[valid]
        top_t = log_t.argmax(-1)
        preds = {role: models[role](x).float().argmax(-1)[valid] for role in ("student_alone", "student_kd")}
        target = y[valid]
        p = log_t.exp()
        sums["tokens"] += float(valid.sum())
        sums["teacher_correct"] += float((top_t == target).sum())
        sums["alone_correct"] += float((preds["student_alone"] == target).sum())
        sums["confidence"] += float(p.max(-1).values.sum())
        sums["entropy"] += float(-(p * log_t).sum(-1).sum())
        sums["agree_alone"] += float((preds["student_alone"] == top_t).sum())
        sums["agree_kd"] += float((preds["student_kd"] == top_t).sum())
    for model, mode in states:
        model.train(mode)
    return sums


def _split_values(sums: dict[str, float], where: str) -> dict[str, float | None]:
    n = sums["tokens"]
    if not n:
        return {}
    out: dict[str, float | None] = {
        f"alone_accuracy_{where}": sums["alone_correct"] / n, f"teacher_confidence_{where}": sums["confidence"] / n,
        f"teacher_entropy_{where}": sums["entropy"] / n, f"agreement_alone_{where}": sums["agree_alone"] / n,
        f"agreement_kd_{where}": sums["agree_kd"] / n}
    if where == "held_out":
        out["teacher_accuracy_held_out"] = sums["teacher_correct"] / n
    return out


def lm_signals(models: dict[str, nn.Module], train: LMDataset, val: LMDataset, device: torch.device,
               rows: dict[str, dict[str, Any]], n_pool: int) -> Signals:
    """The signals of an LM run from its three trained models (by role), its labelled training rows and validation
    split, the table's rows by role (for the parameter counts) and the prompts the teacher answered (n_pool)."""
    sample = evenly_spaced(train)
    train_sums, val_sums = token_sums(models, sample, device), token_sums(models, val, device)
    notes = [] if len(sample) == len(train) else [f"train signals on {len(sample):,} of the {len(train):,} "
                                                  "training rows, evenly spaced"]
    return Signals(family="lm", held_out="validation split", unit="tokens",
                   **_split_values(train_sums, "train"), **_split_values(val_sums, "held_out"),
                   capacity_ratio=capacity_ratio(rows), n_train=len(train), n_pool=n_pool,
                   n_held_out=int(val_sums["tokens"]), notes=notes)


__all__ = ["MAX_ROWS", "evenly_spaced", "lm_signals", "token_sums"]
