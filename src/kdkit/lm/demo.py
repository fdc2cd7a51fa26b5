"""`kdkit demo --task lm`: language-model distillation on generated multi-digit addition, three rows.

A GPT-style teacher (lm_transformer, 2 layers, width 64) and a student about 8x smaller (1 layer, width 32) learn
"123+456=" -> the sum written least significant digit first, then <eos>, from 2,000 labelled problems. The
student alone trains on them; the distilled student (same initial weights, same settings) trains on the same
problems plus a transfer set of 16,000 prompts without answers, whose responses the teacher writes (sequence-level
KD, Kim & Rush 2016), with a token-level forward KL to the teacher on every response token (word-level KD) besides
the cross-entropy. The table:
exact match of the greedy answer, perplexity and token accuracy on the test responses, next-token agreement and
per-token KL to the teacher, parameters and generation speed.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from kdkit.checkpoint import save_state
from kdkit.data.builtin import Indexed, make_loader
from kdkit.data.lm import LMDataset, encode_pairs, synthetic_addition
from kdkit.lm.metrics import lm_row
from kdkit.models.lm import LMTransformer
from kdkit.schemes.offline import OfflineDistillation
from kdkit.schemes.sequence_level import teacher_outputs
from kdkit.schemes.supervised import Supervised
from kdkit.settings import TrainSettings
from kdkit.terms import build_terms
from kdkit.trainer import fit, seed_everything

COLUMNS = [("params", "params", "{:,.0f}"), ("exact_match", "exact match", "{:.3f}"),
           ("perplexity", "perplexity", "{:.3f}"), ("token_accuracy", "token acc.", "{:.3f}"),
           ("agreement", "agreement", "{:.3f}"), ("per_token_kl", "per-token KL", "{:.4f}"),
           ("tokens_per_s", "gen. tokens/s", "{:,.0f}")]


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


def _concat(a: LMDataset, b: LMDataset) -> LMDataset:
    return LMDataset(torch.cat([a.x, b.x]), torch.cat([a.y, b.y]), torch.cat([a.prompt_len, b.prompt_len]),
                     (a.prompts or []) + (b.prompts or []), (a.responses or []) + (b.responses or []))


def table_markdown(rows: dict[str, dict[str, float]]) -> str:
    head = "| model | " + " | ".join(label for _, label, _ in COLUMNS) + " |"
    lines = [head, "|---" * (len(COLUMNS) + 1) + "|"]
    for name, row in rows.items():
        cells = [fmt.format(row[key]) if key in row else "-" for key, _, fmt in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_lm_demo(seed: int = 0, output_dir: str | Path = "runs/demo_lm", quick: bool = False,
                console: Console | None = None, plan: dict[str, Any] | None = None) -> dict[str, dict[str, float]]:
    """Train the teacher, the student alone and the distilled student; print and write the three-row table."""
    console = console or Console()
    p = {**lm_demo_plan(quick), **(plan or {})}
    out = Path(output_dir)
    (out / "models").mkdir(parents=True, exist_ok=True)
    (out / "metrics.jsonl").unlink(missing_ok=True)  # a rerun replaces the run (fit appends to this log)
    start = time.perf_counter()
    data = synthetic_addition(p["n_train"] + p["n_transfer"], p["n_val"], p["n_test"], p["digits"], seed)
    tok = data.tokenizer
    labelled = data.train.subset(range(p["n_train"]))
    transfer_prompts = data.train.subset(range(p["n_train"], p["n_train"] + p["n_transfer"]))
    val_loader = make_loader(data.val, 512, shuffle=False)

    def settings(epochs: int) -> TrainSettings:
        return TrainSettings(epochs=epochs, batch_size=p["batch_size"], lr=p["lr"], seed=seed, monitor="nll",
                             keep="last", progress=False)

    seed_everything(seed)
    teacher = LMTransformer(data.vocab_size, data.seq_len, **p["teacher"])
    student_init = LMTransformer(data.vocab_size, data.seq_len, **p["student"])
    fit(Supervised(teacher), make_loader(labelled, p["batch_size"], shuffle=True, seed=seed), val_loader,
        settings(p["teacher_epochs"]), run_dir=out, name="teacher")
    alone = copy.deepcopy(student_init)
    fit(Supervised(alone), make_loader(labelled, p["batch_size"], shuffle=True, seed=seed), val_loader,
        settings(p["student_epochs"]), run_dir=out, name="student_alone")
    # the teacher writes the transfer set's answers (sequence-level KD); its token distributions on every response
    # token are the word-level targets (forward KL), next to the cross-entropy on the written tokens
    written = teacher_outputs(teacher, transfer_prompts, tok.eos_token_id, tok.pad_token_id, seed=seed)
    distill_set = _concat(labelled, encode_pairs(written.prompts or [], written.responses or [], data.seq_len,
                                                 tok.eos_token_id, tok.pad_token_id))
    distilled = copy.deepcopy(student_init)
    scheme = OfflineDistillation(distilled, teacher, build_terms(p["losses"]), cache_size=len(distill_set))
    fit(scheme, make_loader(Indexed(distill_set), p["batch_size"], shuffle=True, seed=seed), val_loader,
        settings(p["student_epochs"]), run_dir=out, name="student_kd")
    scheme.close()
    rows = {"teacher": lm_row(teacher, data.test, tok.eos_token_id),
            "student alone": lm_row(alone, data.test, tok.eos_token_id, teacher),
            "distilled student": lm_row(distilled, data.test, tok.eos_token_id, teacher)}
    for name, model in (("teacher", teacher), ("student_alone", alone), ("student_kd", distilled)):
        save_state(model.state_dict(), out / "models" / f"{name}.safetensors")
    tok.save(out / "tokenizer.json")
    seconds = time.perf_counter() - start
    (out / "results.json").write_text(json.dumps({"task": "lm", "plan": p, "seed": seed, "rows": rows,
                                                  "seconds": seconds}, indent=1))
    (out / "table.md").write_text(table_markdown(rows))
    console.print(f"kdkit demo (lm): {p['digits']}-digit addition, {len(data.test)} test problems")
    console.print(table_markdown(rows), soft_wrap=True, markup=False, highlight=False)
    console.print(f"{seconds:.0f} s; written to {out}")
    return rows


__all__ = ["lm_demo_plan", "run_lm_demo", "table_markdown"]
