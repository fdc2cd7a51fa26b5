"""The configuration `kdkit demo` runs: a CNN teacher and an MLP student on MNIST-1D, generated offline."""

from __future__ import annotations

from pathlib import Path

from kdkit.config import RunConfig, parse_config


def demo_config(seed: int = 0, output_dir: str | Path = "runs/demo", quick: bool = False) -> RunConfig:
    raw = {
        "seed": seed,
        "output_dir": str(output_dir),
        "data": {"name": "mnist1d", "transfer_size": 2_000 if quick else 28_000, "val_fraction": 0.1},
        "train": {"epochs": 2 if quick else 30, "batch_size": 128, "lr": 3e-3, "weight_decay": 1e-4},
        "teacher": {"name": "cnn1d", "params": {"width": 64, "depth": 3, "kernel": 5}},
        "student": {"name": "mlp", "params": {"hidden": [64]}},
        "distill": {
            "losses": [{"name": "kd", "T": 4.0, "alpha": 0.1}],
            "use_transfer": True,
            "cache_teacher": True,  # MNIST-1D has no augmentation: the teacher's outputs never change
            "train": {"epochs": 2 if quick else 30, "batch_size": 256},
        },
    }
    return parse_config(raw)
