"""Tiny synthetic data and networks shared by the training-loop and scheme tests."""

import torch
from torch import nn
from torch.utils.data import TensorDataset


def toy_data(n: int = 256, d: int = 8, c: int = 3, seed: int = 0) -> TensorDataset:
    """n Gaussian points in d dimensions; the class is the largest of the first c coordinates."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    return TensorDataset(x, x[:, :c].argmax(1).long())


def toy_net(d: int = 8, c: int = 3, hidden: int = 16, bn: bool = True, seed: int | None = None) -> nn.Sequential:
    """Linear - (BatchNorm) - ReLU - Linear; `seed` fixes the initial weights."""
    if seed is not None:
        torch.manual_seed(seed)
    layers = [nn.Linear(d, hidden)] + ([nn.BatchNorm1d(hidden)] if bn else []) + [nn.ReLU(), nn.Linear(hidden, c)]
    return nn.Sequential(*layers)


def mnist1d_config(tmp_path, scheme=None, **distill) -> dict:
    """A raw kdkit config of one epoch on MNIST-1D with a tiny CNN teacher and MLP student, writing tmp_path/run."""
    return {
        "seed": 0,
        "output_dir": str(tmp_path / "run"),
        "data": {"name": "mnist1d", "val_fraction": 0.1},
        "train": {"epochs": 1, "batch_size": 256, "lr": 3e-3, "progress": False},
        "teacher": {"name": "cnn1d", "params": {"width": 8, "depth": 2, "kernel": 3}},
        "student": {"name": "mlp", "params": {"hidden": [16]}},
        "distill": {"scheme": scheme or {"name": "offline"}, **distill},
    }
