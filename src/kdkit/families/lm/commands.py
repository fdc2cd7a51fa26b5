"""`kdkit evaluate`, `kdkit predict` and `kdkit export` on a language-model run directory (kdkit.families.lm.rundir).

evaluate rebuilds the run's test split from its config.yaml (the same seed gives the same split and tokenizer),
loads models/<role>.safetensors and measures the three models again with kdkit.families.lm.run.measure; it writes
evaluation.json, evaluation.md and evaluation_predictions.npz beside the training's results, which stay as they
are (the classification runs' contract, kdkit.run.rundir.EVALUATION_OUTPUTS).

predict continues prompts, one per line of a text file, with one of the run's models (greedy decoding, the run's
tokenizer) and prints one CSV row per prompt: prompt, completion.

export writes one model as ONNX: token ids (batch, sequence) -> next-token logits (batch, sequence, vocabulary),
both dimensions dynamic up to the model's context, checked against PyTorch in ONNX Runtime on test rows; generation
(the loop around it) stays with the caller. The tokenizer is written beside it (tokenizer.json of a CharTokenizer,
or the hf_lm: folder's files).
"""

from __future__ import annotations

import copy
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from kdkit.errors import ConfigError, RunDirError
from kdkit.families.lm.rundir import table_markdown, units_npz
from kdkit.io.checkpoint import load_weights, write_atomic
from kdkit.io.textfile import read_text
from kdkit.run.rundir import CONFIG, EVALUATION_OUTPUTS, LABELS, MODELS, ROLES, TOKENIZER, RunDir


def load_lm_run_models(run_dir: str | Path, roles: tuple[str, ...] = ROLES) -> tuple[Any, Any, dict[str, nn.Module]]:
    """(config, data, models of `roles`) of a finished LM run: the data rebuilt from config.yaml, the weights from
    models/ (an hf_lm: teacher is read from its folder again, then given the run's weights), or for a teacher the run
    references (models/meta.json) from its file or folder, refused in one line when that is gone or changed."""
    import yaml

    from kdkit.families.lm.config import parse_lm_config
    from kdkit.families.lm.run import build_lm_models
    from kdkit.models import saved_run_sources
    from kdkit.run.meta import references, weights_file

    run_dir = Path(run_dir)
    refs = references(run_dir)
    missing = [p for p in [CONFIG, *(f"{MODELS}/{r}.safetensors" for r in ROLES if r not in refs)]
               if not (run_dir / p).exists()]
    if missing:
        raise RunDirError(f"{run_dir} is not a complete language-model run: missing {', '.join(missing)}")
    # a referenced folder also gives the tokenizer every role needs; a referenced file only the teacher's weights
    sources = {role: weights_file(run_dir, role) for role, ref in refs.items() if role in roles or "files" in ref}
    try:
        raw = yaml.safe_load(RunDir(run_dir).config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        raw = None
    if not isinstance(raw, dict):
        raise RunDirError(f"{RunDir(run_dir).config} is damaged (not a YAML mapping); restore it from the config you "
                          "trained with")
    for role in ("teacher", "student"):  # the run's weights are in models/ or referenced: no other file is needed
        if isinstance(raw.get(role), dict):
            raw[role]["checkpoint"] = None
    try:
        with saved_run_sources():  # a vanished hf_lm: folder is refused when its model is built, not here
            cfg = parse_lm_config(raw)
    except ConfigError as err:
        raise RunDirError(f"{RunDir(run_dir).config}: {err}; restore the file from the config you trained with") \
            from None
    data, _transfer, teacher, student = build_lm_models(cfg)
    built = {"teacher": teacher, "student_alone": student, "student_kd": copy.deepcopy(student)}
    models = {role: built[role] for role in roles}
    for role, model in models.items():
        source = sources.get(role, RunDir(run_dir).weights(role))
        if source.is_file():  # a referenced hf_lm: folder's weights are the ones just read from it
            load_weights(model, source)
        model.eval()
    return cfg, data, models


def evaluate_lm_run(run_dir: str | Path, console: Console | None = None) -> dict[str, dict[str, float]]:
    """Measure the run's three models again on its test split; write the evaluation files; print the table."""
    from kdkit.diagnosis import diagnose
    from kdkit.families.lm.run import measure
    from kdkit.families.lm.signals import lm_signals
    from kdkit.report.runinfo import diagnosis_lines
    from kdkit.trainer.batches import resolve_device
    from kdkit.verdict import lm_run_verdict

    console = console or Console()
    run_dir = Path(run_dir)
    cfg, data, models = load_lm_run_models(run_dir)
    device = resolve_device(cfg.train.device)
    rows, units = measure(models, data, device)
    diagnosis = diagnose(lm_signals(models, data.train, data.val, device, rows, _pool(run_dir, cfg)))
    verdict = lm_run_verdict(units, rows, seed=cfg.seed, why=diagnosis.findings[0])
    write_atomic(run_dir / EVALUATION_OUTPUTS["predictions"], units_npz(units))
    table = table_markdown({LABELS[r]: rows[r] for r in ROLES})
    write_atomic(run_dir / EVALUATION_OUTPUTS["table"], table)
    results = {"kind": "lm", "evaluated": True, "seed": cfg.seed, "verdict": verdict.as_dict(),
               "diagnosis": diagnosis.as_dict(), "rows": [{"model": LABELS[r], "role": r, **rows[r]} for r in ROLES]}
    write_atomic(run_dir / EVALUATION_OUTPUTS["results"], json.dumps(results, indent=1))
    console.print(f"kdkit (lm): {cfg.data.name}, scheme {cfg.distill.scheme.name}, {len(data.test):,} test rows, "
                  "re-evaluated", highlight=False)
    console.print(table, soft_wrap=True, markup=False, highlight=False)
    for line in verdict.lines() + diagnosis_lines(diagnosis, verdict):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    return rows


@dataclass
class LoadedLM:
    """One model of a language-model run, in eval mode, with the run's tokenizer and context length: what
    `kdkit.load` gives back for an LM run."""

    model: nn.Module
    role: str
    tokenizer: Any
    seq_len: int

    def generate(self, prompts: list[str], max_new_tokens: int | None = None) -> list[str]:
        """The greedy continuation of each prompt, up to <eos> (left out) or `max_new_tokens` (default: up to the
        context); the run's exact match compares this with the reference answer."""
        from kdkit.lm.generate import generate, pad_prompts

        tokenizer = self.tokenizer
        encoded = [tokenizer.encode(p) for p in prompts]
        longest = max(len(e) for e in encoded)
        if longest >= self.seq_len:
            raise ConfigError(f"a prompt has {longest} tokens but the models were trained on {self.seq_len}; "
                              "shorten it")
        new = max_new_tokens or self.seq_len - longest
        if new < 1 or longest + new > self.seq_len:
            raise ConfigError(f"--max-new-tokens must be between 1 and {self.seq_len - longest} for these prompts "
                              f"(context {self.seq_len} tokens)")
        eos = tokenizer.eos_token_id
        pad = getattr(tokenizer, "pad_token_id", None)
        ids, lengths = pad_prompts(encoded, eos if pad is None else pad)
        with torch.no_grad():
            out = generate(self.model, ids, lengths, new, eos_id=eos, pad_id=eos if pad is None else pad)
        answers = []
        for tokens, n in zip(out.new.tolist(), out.lengths.tolist(), strict=True):
            answer = tokens[:n]
            if answer and answer[-1] == eos:  # the end of the answer, not part of it
                answer = answer[:-1]
            answers.append(tokenizer.decode(answer))
        return answers


def load_lm(run_dir: str | Path, model: str = "student_kd", device: str = "cpu") -> LoadedLM:
    """The run's `model` with its tokenizer (the data rebuilt from config.yaml give the tokenizer and context)."""
    if model not in ROLES:
        raise ConfigError(f"unknown model '{model}'; choose one of: {', '.join(ROLES)}")
    _cfg, data, models = load_lm_run_models(run_dir, (model,))
    return LoadedLM(models[model].to(device).eval(), model, data.tokenizer, data.seq_len)


def _pool(run_dir: Path, cfg: Any) -> int:
    """The prompts the teacher answered for the distilled student, as the training run recorded them."""
    try:
        data = json.loads(RunDir(run_dir).results.read_text()).get("data", {})
    except (OSError, ValueError, AttributeError):
        return 0
    return cfg.distill.scheme.transfer_pool(int(data.get("n_transfer") or 0))


def predict_lm(run_dir: str | Path, prompts_file: str | Path, model: str = "student_kd",
               max_new_tokens: int | None = None) -> str:
    """CSV text (prompt, completion) of greedy continuations of each line of `prompts_file` by the run's `model`."""
    if model not in ROLES:
        raise ConfigError(f"unknown model '{model}'; choose one of: {', '.join(ROLES)}")
    path = Path(prompts_file)
    if not path.is_file():
        raise ConfigError(f"prompts file not found: {path} (give a .txt file with one prompt per line)")
    prompts = [line for line in read_text(path, ConfigError).splitlines() if line.strip()]
    if not prompts:
        raise ConfigError(f"{path} holds no prompt; write one prompt per line")
    answers = load_lm(run_dir, model).generate(prompts, max_new_tokens)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["prompt", "completion"])
    writer.writerows(zip(prompts, answers, strict=True))
    return buffer.getvalue()


def export_lm(run_dir: str | Path, model: str = "student_kd", output: str | Path | None = None) -> Any:
    """ONNX file of the run's `model` (kdkit.deploy.export.ExportReport), its tokenizer saved beside it."""
    from kdkit.deploy.export import export_checked

    if model not in ROLES:
        raise ConfigError(f"unknown model '{model}'; choose one of: {', '.join(ROLES)}")
    target = Path(output) if output is not None else RunDir(run_dir).onnx(model)
    _cfg, data, models = load_lm_run_models(run_dir, (model,))
    ids = data.test.x[:64]
    done = export_checked(models[model], {"input_ids": ids}, target, atol=1e-4,
                          dynamic={"input_ids": {0: "batch", 1: "sequence"}},
                          max_sizes={"sequence": data.seq_len})
    tokenizer_dir = target.with_name(f"{target.stem}_tokenizer")
    tokenizer_dir.mkdir(parents=True, exist_ok=True)
    if hasattr(data.tokenizer, "save_pretrained"):
        data.tokenizer.save_pretrained(tokenizer_dir)
    else:
        data.tokenizer.save(tokenizer_dir / TOKENIZER)  # the file the run directory keeps
    return done


__all__ = ["LoadedLM", "evaluate_lm_run", "export_lm", "load_lm", "load_lm_run_models", "predict_lm"]
