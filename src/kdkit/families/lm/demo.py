"""`kdkit demo --task lm`: language-model distillation on generated multi-digit addition, three rows.

A GPT-style teacher (lm_transformer, 2 layers, width 64) and a student about 8x smaller (1 layer, width 32) learn
"123+456=" -> the sum written least significant digit first, then <eos>, from 2,000 labelled problems. The
student alone trains on them; the distilled student (same initial weights, same settings) trains on the same
problems plus a transfer set of 16,000 prompts without answers, whose responses the teacher writes (sequence-level
KD, Kim & Rush 2016), with a token-level forward KL to the teacher on every response token (word-level KD) besides
the cross-entropy. The table: exact match of the greedy answer, perplexity and token accuracy on the test
responses, next-token agreement and per-token KL to the teacher, parameters and generation speed.

The demo is the config configs/lm_addition.yaml (`kdkit train configs/lm_addition.yaml` runs the same thing), read
from the copy shipped with the package (kdkit.config.demos); `quick` shrinks it to seconds for smoke tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from kdkit.config.demos import demo_yaml
from kdkit.families.lm.config import LMRunConfig, parse_lm_config
from kdkit.families.lm.rundir import table_markdown
from kdkit.run.rundir import LABELS, ROLES

# --quick: fewer problems and epochs, for smoke tests (seconds)
QUICK = ["data.n_train=500", "data.n_transfer=500", "data.n_val=200", "data.n_test=300", "teacher.train.epochs=2",
         "train.epochs=2"]


def lm_demo_config(seed: int = 0, output_dir: str | Path = "runs/demo_lm", quick: bool = False,
                   overrides: Sequence[str] = ()) -> LMRunConfig:
    """The demo as an LM config: the shipped lm_addition.yaml (kdkit.config.demos), shrunk by `quick`; `overrides`
    ("train.epochs=5", see kdkit.config.overrides) change its keys as in `kdkit train`."""
    from kdkit.config.overrides import apply_overrides

    raw = {**demo_yaml("lm_addition.yaml"), "seed": seed, "output_dir": str(output_dir)}
    return parse_lm_config(apply_overrides(raw, [*(QUICK if quick else []), *overrides],
                                           defaults=lambda r: parse_lm_config(r).model_dump(mode="json")))


def run_lm_demo(seed: int = 0, output_dir: str | Path = "runs/demo_lm", quick: bool = False,
                console: Console | None = None, overwrite: bool = False,
                overrides: Sequence[str] = ()) -> dict[str, dict[str, float]]:
    """Train the teacher, the student alone and the distilled student; print and write the three-row table.
    Returns the rows by display name."""
    from kdkit.families.lm.run import run_lm

    result = run_lm(lm_demo_config(seed, output_dir, quick, overrides), console=console, overwrite=overwrite)
    return {LABELS[role]: result.rows[role] for role in ROLES}


__all__ = ["lm_demo_config", "run_lm_demo", "table_markdown"]
