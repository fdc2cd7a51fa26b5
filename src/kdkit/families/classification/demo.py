"""The configurations `kdkit demo` runs, one per kind of data, all on data generated offline (nothing downloaded):

- ``signals`` (default): a 1-D CNN teacher and an MLP student on MNIST-1D; the same as ``configs/demo.yaml``.
- ``text``: a Transformer teacher and a 1-D CNN student on generated reviews where word order decides the class;
  the same as ``configs/text_reviews.yaml``.
- ``tagging``: one tag per token, a Transformer tagger teaching a CNN tagger; the same as ``configs/tagging.yaml``.

``quick`` shrinks epochs and the transfer set, for smoke tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kdkit.errors import ConfigError
from kdkit.families.classification.config import RunConfig, parse_config


def _signals(quick: bool) -> dict[str, Any]:
    return {
        # the recipe chosen on validation by bench/demo_recipes.py: many inputs only the teacher labels, pure soft
        # targets at T=2, and a distillation stage twice as long as the others
        "data": {"name": "mnist1d", "transfer_size": 2_000 if quick else 56_000, "val_fraction": 0.1},
        # keep: last: 400 validation samples are too few for picking the best epoch (the verdict would say so)
        "train": {"epochs": 2 if quick else 30, "batch_size": 128, "lr": 3e-3, "weight_decay": 1e-4, "keep": "last"},
        "teacher": {"name": "cnn1d", "params": {"width": 64, "depth": 3, "kernel": 5}},
        "student": {"name": "mlp", "params": {"hidden": [64]}},
        "distill": {
            "losses": [{"name": "kd", "T": 2.0, "alpha": 0.0}],
            "use_transfer": True,
            "cache_teacher": True,  # MNIST-1D has no augmentation: the teacher's outputs never change
            "train": {"epochs": 2 if quick else 60, "batch_size": 256},
        },
    }


def _text(quick: bool) -> dict[str, Any]:
    return {
        "data": {"name": "synthetic_reviews", "transfer_size": 1_000 if quick else 8_000, "val_fraction": 0.1},
        "train": {"epochs": 2 if quick else 20, "batch_size": 64, "lr": 3e-3, "keep": "last"},  # 400 val samples
        "teacher": {"name": "text_transformer", "params": {"dim": 64, "heads": 4, "layers": 2}},
        "student": {"name": "text_cnn", "params": {"width": 32}, "train": {"lr": 5e-3}},
        "distill": {"losses": [{"name": "kd", "T": 4.0, "alpha": 0.1}], "cache_teacher": True},
    }


def _tagging(quick: bool) -> dict[str, Any]:
    return {
        "data": {"name": "synthetic_tagging"},
        "train": {"epochs": 2 if quick else 20, "batch_size": 64, "lr": 3e-3, "keep": "last"},  # 400 val sentences
        "teacher": {"name": "text_transformer", "params": {"dim": 64, "heads": 4, "layers": 2, "pooling": "none"}},
        "student": {"name": "text_cnn", "params": {"width": 32, "kernels": [3], "pooling": "none"}},
        "distill": {"losses": [{"name": "token_kd", "T": 2.0, "alpha": 0.5}]},
    }


DEMOS: dict[str, Callable[[bool], dict[str, Any]]] = {"signals": _signals, "text": _text, "tagging": _tagging}


def demo_config(
    seed: int = 0, output_dir: str | Path = "runs/demo", quick: bool = False, task: str = "signals",
    overrides: Sequence[str] = (),
) -> RunConfig:
    """The demo's config; `overrides` ("train.epochs=5", see kdkit.config.overrides) change it as in `kdkit train`."""
    from kdkit.config.overrides import apply_overrides

    if task not in DEMOS:
        # lm: kdkit.families.lm.demo
        raise ConfigError(f"unknown demo '{task}'; choose one of: {', '.join(DEMOS)}")
    raw = {"seed": seed, "output_dir": str(output_dir), **DEMOS[task](quick)}
    return parse_config(apply_overrides(raw, overrides, defaults=lambda r: parse_config(r).model_dump(mode="json")))
