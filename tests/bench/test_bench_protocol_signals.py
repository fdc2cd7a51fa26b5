"""The paired benchmarks' diagnosis signals: the teacher and the student alone read on the training and
validation splits, each number as its definition says (accuracy, mean top softmax probability, parameter ratio)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import _protocol  # noqa: E402


def test_alone_signals_are_the_definitions_on_the_training_and_validation_splits():
    gen = torch.Generator().manual_seed(0)
    x_train, x_val = torch.randn(40, 5, generator=gen), torch.randn(24, 5, generator=gen)
    y_train, y_val = torch.randint(0, 3, (40,), generator=gen), torch.randint(0, 3, (24,), generator=gen)
    bundle = SimpleNamespace(train=torch.utils.data.TensorDataset(x_train, y_train),
                             val=torch.utils.data.TensorDataset(x_val, y_val))
    torch.manual_seed(1)
    teacher = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    alone = torch.nn.Linear(5, 3)
    signals = _protocol.alone_signals(teacher, alone, bundle)
    with torch.no_grad():
        t_train, t_val, a_train, a_val = teacher(x_train), teacher(x_val), alone(x_train), alone(x_val)
    assert np.isclose(signals["teacher_accuracy_held_out"], (t_val.argmax(1) == y_val).float().mean().item())
    assert np.isclose(signals["alone_accuracy_train"], (a_train.argmax(1) == y_train).float().mean().item())
    assert np.isclose(signals["alone_accuracy_held_out"], (a_val.argmax(1) == y_val).float().mean().item())
    assert np.isclose(signals["teacher_confidence_train"], t_train.softmax(1).max(1).values.mean().item(), atol=1e-6)
    assert np.isclose(signals["agreement_alone_held_out"], (a_val.argmax(1) == t_val.argmax(1)).float().mean().item())
    assert signals["capacity_ratio"] == (5 * 16 + 16 + 16 * 3 + 3) / (5 * 3 + 3)
    assert (signals["n_train"], signals["n_pool"], signals["n_held_out"], signals["pool_ratio"]) == (40, 0, 24, 0.0)
