"""`kdkit demo --task lm`: language-model distillation on generated multi-digit addition, three rows.

A GPT-style teacher (lm_transformer, 2 layers, width 64) and a student about 8x smaller (1 layer, width 32) learn
"123+456=" -> the sum written least significant digit first, then <eos>, from 2,000 labelled problems. The
student alone trains on them; the distilled student (same initial weights, same settings) trains on the same
problems plus a transfer set of 16,000 prompts without answers, whose responses the teacher writes (sequence-level
KD, Kim & Rush 2016), with a token-level forward KL to the teacher on every response token (word-level KD) besides
the cross-entropy. The table: exact match of the greedy answer, perplexity and token accuracy on the test
responses, next-token agreement and per-token KL to the teacher, parameters and generation speed.

The demo is the config configs/lm_addition.yaml (`kdkit train configs/lm_addition.yaml` runs the same thing),
built here so that it needs no file; `quick` shrinks it to seconds for smoke tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from kdkit.families.lm.config import LMRunConfig, parse_lm_config
from kdkit.families.lm.rundir import table_markdown
from kdkit.run.rundir import LABELS, ROLES


def lm_demo_plan(quick: bool = False) -> dict[str, Any]:
    """Sizes and settings of the demo (quick: for smoke tests, seconds)."""
    return {
        "digits": 3, "n_train": 500 if quick else 2_000, "n_transfer": 500 if quick else 16_000,
        "n_val": 200 if quick else 500, "n_test": 300 if quick else 1_000,
        "teacher": {"layers": 2, "width": 64, "heads": 4}, "student": {"layers": 1, "width": 32, "heads": 4},
        "teacher_epochs": 2 if quick else 40, "student_epochs": 2 if quick else 30,
        "batch_size": 64, "lr": 3e-3,
        "losses": [{"name": "ce"}, {"name": "forward_kl", "T": 1.0}],
    }


def lm_demo_config(seed: int = 0, output_dir: str | Path = "runs/demo_lm", quick: bool = False,
                   plan: dict[str, Any] | None = None, overrides: Sequence[str] = ()) -> LMRunConfig:
    """The demo as an LM config (`plan` overrides lm_demo_plan's entries; `overrides`, "train.epochs=5", its config
    keys as in `kdkit train`, see kdkit.config.overrides)."""
    from kdkit.config.overrides import apply_overrides

    p = {**lm_demo_plan(quick), **(plan or {})}
    raw = {
        "seed": seed, "output_dir": str(output_dir),
        "data": {"name": "synthetic_addition", **{k: p[k] for k in ("digits", "n_train", "n_transfer", "n_val",
                                                                    "n_test")}},
        "train": {"epochs": p["student_epochs"], "batch_size": p["batch_size"], "lr": p["lr"], "monitor": "nll",
                  "keep": "last", "progress": False},
        "teacher": {"name": "lm_transformer", "params": p["teacher"], "train": {"epochs": p["teacher_epochs"]}},
        "student": {"name": "lm_transformer", "params": p["student"]},
        "distill": {"scheme": {"name": "sequence_level"}, "losses": p["losses"]},
    }
    return parse_lm_config(apply_overrides(raw, overrides,
                                           defaults=lambda r: parse_lm_config(r).model_dump(mode="json")))


def run_lm_demo(seed: int = 0, output_dir: str | Path = "runs/demo_lm", quick: bool = False,
                console: Console | None = None, plan: dict[str, Any] | None = None,
                overwrite: bool = False, overrides: Sequence[str] = ()) -> dict[str, dict[str, float]]:
    """Train the teacher, the student alone and the distilled student; print and write the three-row table.
    Returns the rows by display name."""
    from kdkit.families.lm.run import run_lm

    result = run_lm(lm_demo_config(seed, output_dir, quick, plan, overrides), console=console, overwrite=overwrite)
    return {LABELS[role]: result.rows[role] for role in ROLES}


__all__ = ["lm_demo_config", "lm_demo_plan", "run_lm_demo", "table_markdown"]
