"""The configurations `kdkit demo` runs, one per kind of data, all on data generated offline (nothing downloaded),
read from the configs shipped with the package (kdkit.config.demos; the repository's configs/ holds the same files):

- ``signals`` (default): a 1-D CNN teacher and an MLP student on MNIST-1D: ``configs/demo.yaml``.
- ``text``: a Transformer teacher and a 1-D CNN student on generated reviews where word order decides the class:
  ``configs/text_reviews.yaml``.
- ``tagging``: one tag per token, a Transformer tagger teaching a CNN tagger: ``configs/tagging.yaml``.

``quick`` shrinks epochs and the transfer set, for smoke tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kdkit.config.demos import demo_yaml
from kdkit.errors import ConfigError
from kdkit.families.classification.config import RunConfig, parse_config

# each demo task's shipped config (kdkit.config.demos)
DEMOS = {"signals": "demo.yaml", "text": "text_reviews.yaml", "tagging": "tagging.yaml"}
# --quick: fewer epochs and a smaller transfer set, for smoke tests (seconds)
QUICK = {
    "signals": ["data.transfer_size=2000", "train.epochs=2", "distill.train.epochs=2"],
    "text": ["data.transfer_size=1000", "train.epochs=2"],
    "tagging": ["train.epochs=2"],
}


def demo_config(
    seed: int = 0, output_dir: str | Path = "runs/demo", quick: bool = False, task: str = "signals",
    overrides: Sequence[str] = (),
) -> RunConfig:
    """The demo's config; `overrides` ("train.epochs=5", see kdkit.config.overrides) change it as in `kdkit train`."""
    from kdkit.config.overrides import apply_overrides

    if task not in DEMOS:
        raise ConfigError(f"unknown demo '{task}'; choose one of: {', '.join(DEMOS)}")
    raw = {**demo_yaml(DEMOS[task]), "seed": seed, "output_dir": str(output_dir)}
    changes = [*(QUICK[task] if quick else []), *overrides]
    return parse_config(apply_overrides(raw, changes, defaults=lambda r: parse_config(r).model_dump(mode="json")))
