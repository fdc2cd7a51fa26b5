"""configs/lm_addition.yaml shrunk to seconds per run, for the tests of language-model runs."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SHRUNK = {"digits": 2, "n_train": 64, "n_transfer": 32, "n_val": 16, "n_test": 24}


def shrunk_config(tmp: Path, seed: int, **distill: object) -> Path:
    """configs/lm_addition.yaml with a few problems, one epoch and tiny models, written under tmp."""
    raw = yaml.safe_load((ROOT / "configs" / "lm_addition.yaml").read_text())
    raw["seed"], raw["output_dir"] = seed, str(tmp / f"run{seed}")
    raw["data"].update(SHRUNK)
    raw["train"]["epochs"] = 1
    raw["teacher"]["train"] = {"epochs": 2}
    raw["teacher"]["params"] = {"layers": 1, "width": 32, "heads": 2}
    raw["student"]["params"] = {"layers": 1, "width": 8, "heads": 2}
    raw["distill"].update(distill)
    path = tmp / f"lm{seed}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path
