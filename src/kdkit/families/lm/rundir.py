"""The run directory of a language-model run: the classification contract (kdkit.report.rundir) with LM numbers.

    config.yaml        the resolved config (kdkit.families.lm.config), so `kdkit compare` pools runs that differ by seed
    results.json       format 1, "kind": "lm", rows teacher / student_alone / student_kd with perplexity, token
                       accuracy, agreement, per-token KL, exact match, generation tokens/s and parameters, the
                       verdict (kdkit.verdict.lm_run_verdict), the data and training records; written last
    predictions.npz    per test row (problem or text) the sums of kdkit.lm.metrics.lm_units: test_tokens and
                       test_<role>_<nll|correct|agree|kl|exact>; every quality number of the table is recomputed
                       from them, and the verdict's bootstrap resamples them
    table.md, metrics.jsonl, models/<role>.safetensors, tokenizer.json (a CharTokenizer's; an hf_lm: model
    keeps its own); a teacher used as given is referenced in models/meta.json instead (kdkit.run.meta)

Full logits are not kept: (rows, length, vocabulary) floats would be far larger than the models for a real
vocabulary, and the sums are all a report needs. Generation speed cannot be recomputed, so it is read from
results.json, like latency for classification runs.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kdkit.errors import RunDirError
from kdkit.io.checkpoint import write_atomic
from kdkit.run.rundir import LABELS, PREDICTIONS, RESULTS_FORMAT, ROLES, RunDir

KIND = "lm"
STATS = ("nll", "correct", "agree", "kl", "exact")
# (results key, column title, format); the same columns in table.md, the terminal, the report and the comparison
COLUMNS = [("params", "params", "{:,.0f}"), ("exact_match", "exact match", "{:.3f}"),
           ("perplexity", "perplexity", "{:.3f}"), ("token_accuracy", "token acc.", "{:.3f}"),
           ("agreement", "agreement", "{:.3f}"), ("per_token_kl", "per-token KL", "{:.4f}"),
           ("tokens_per_s", "gen. tokens/s", "{:,.0f}")]
QUALITY = ("exact_match", "perplexity", "token_accuracy", "agreement", "per_token_kl")
AGAIN = "rerun the run that wrote it (`kdkit train CONFIG` or `kdkit demo --task lm`) with --overwrite"


def format_value(key: str, value: Any) -> str:
    fmt = dict((k, f) for k, _, f in COLUMNS)[key]
    return "-" if value is None else fmt.format(value)


def table_markdown(rows: dict[str, dict[str, Any]]) -> str:
    """The three-row table, rows by display name."""
    head = "| model | " + " | ".join(label for _, label, _ in COLUMNS) + " |"
    lines = [head, "|---" * (len(COLUMNS) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(format_value(key, row.get(key)) for key, _, _ in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def write_lm_run(run_dir: Path, rows: dict[str, dict[str, Any]], units: dict[str, dict[str, np.ndarray]],
                 summary: dict[str, Any]) -> None:
    """predictions.npz, table.md, then results.json (last: its presence means the set is complete). `rows` and
    `units` by role; `summary` adds the run's own records (data, training, verdict, seed, seconds)."""
    write_atomic(RunDir(run_dir).predictions, units_npz(units))
    write_atomic(RunDir(run_dir).table, table_markdown({LABELS[r]: rows[r] for r in ROLES}))
    results = {"format": RESULTS_FORMAT, "kind": KIND, "task": KIND, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
               **summary, "rows": [{"model": LABELS[r], "role": r, **rows[r]} for r in ROLES]}
    write_atomic(RunDir(run_dir).results, json.dumps(results, indent=1))


def units_npz(units: dict[str, dict[str, np.ndarray]]) -> bytes:
    """predictions.npz's bytes: per test row the token count and each role's sums (see the module docstring)."""
    arrays = {"test_tokens": units["teacher"]["tokens"]}
    for role in ROLES:
        arrays.update({f"test_{role}_{key}": units[role][key] for key in STATS if key in units[role]})
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def is_lm_run(run_dir: str | Path) -> bool:
    """True when run_dir/results.json says it is a language-model run (anything unreadable: False, and the
    classification reader gives its own error)."""
    try:
        return json.loads(RunDir(run_dir).results.read_text()).get("kind") == KIND
    except (OSError, ValueError, AttributeError):
        return False


@dataclass
class LMRun:
    """An LM run directory read back: results.json, per-row sums by role, config and training log."""

    path: Path
    results: dict[str, Any]
    units: dict[str, dict[str, np.ndarray]]
    config: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def rows(self) -> dict[str, dict[str, Any]]:
        return {row["role"]: row for row in self.results["rows"]}

    @property
    def labels(self) -> dict[str, str]:
        return dict(LABELS)

    @property
    def seed(self) -> Any:
        return (self.config or {}).get("seed", self.results.get("seed", "?"))


def _units(run_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    try:
        with np.load(RunDir(run_dir).predictions, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError) as err:
        raise RunDirError(f"{RunDir(run_dir).predictions} cannot be read ({err}); {AGAIN}") from None
    needed = ["test_tokens", *(f"test_{r}_{k}" for r in ROLES for k in ("nll", "correct"))]
    needed += [f"test_{r}_{k}" for r in ROLES[1:] for k in ("agree", "kl")]
    absent = [k for k in needed if k not in arrays]
    if absent:
        raise RunDirError(f"{RunDir(run_dir).predictions} lacks {', '.join(absent)}; {AGAIN}")
    tokens = arrays["test_tokens"]
    units = {r: {"tokens": tokens, **{k: arrays[f"test_{r}_{k}"] for k in STATS if f"test_{r}_{k}" in arrays}}
             for r in ROLES}
    bad = [f"{r}_{k}" for r, u in units.items() for k, a in u.items()
           if a.shape != tokens.shape or a.dtype.kind not in "iuf" or not np.isfinite(a).all()]
    if bad or tokens.ndim != 1 or tokens.sum() <= 0:
        raise RunDirError(f"{RunDir(run_dir).predictions} is damaged ({', '.join(bad) or 'test_tokens'}: not one "
                          f"finite number per test row); {AGAIN}")
    return units


def load_lm_run(run_dir: str | Path) -> LMRun:
    """Everything a report needs from an LM run directory; RunDirError naming what is missing or damaged."""
    from kdkit.report.rundir import _results, history_and_config

    run_dir = Path(run_dir)
    if not RunDir(run_dir).predictions.is_file():
        raise RunDirError(f"{run_dir} is not a complete kdkit run: missing {PREDICTIONS}; {AGAIN}")
    results = _results(run_dir)  # format, rows and roles, as for every run
    missing = [f"{r}.{k}" for r in ROLES for k in ("perplexity", "token_accuracy")
               if not isinstance(next(row for row in results["rows"] if row.get("role") == r).get(k), (int, float))]
    if missing:
        raise RunDirError(f"{RunDir(run_dir).results} lacks {', '.join(missing)}; {AGAIN}")
    run = LMRun(run_dir, results, _units(run_dir))
    run.history, run.config = history_and_config(run_dir, run.notes)
    return run


__all__ = ["COLUMNS", "KIND", "LMRun", "is_lm_run", "load_lm_run", "table_markdown",
           "write_lm_run"]
