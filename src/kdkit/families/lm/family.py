"""The language-model family as the command line sees it (kdkit.families.base.Family)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from kdkit.errors import ConfigError
from kdkit.families.base import Options
from kdkit.run.rundir import (
    CHECKPOINTS,
    CONFIG,
    EVALUATION,
    EVALUATION_PREDICTIONS,
    EVALUATION_TABLE,
    METRICS,
    MODELS,
    PREDICTIONS,
    REPORT_FIGURES,
    REPORT_HTML,
    REPORT_MARKDOWN,
    RESULTS,
    TABLE,
    TEACHER_TOPK,
    TOKENIZER,
    TUNE,
)
from kdkit.verdict import EXACT_MATCH, TOKEN_ACCURACY


class LanguageModels:
    name = "lm"
    fallback = False
    compare_group = "language-model"  # `kdkit compare` compares runs of one group
    demo_tasks = ("lm",)
    verdict_metrics = (EXACT_MATCH, TOKEN_ACCURACY)  # exact match with prompt/response pairs, else token accuracy
    run_files = (CONFIG, METRICS, CHECKPOINTS, MODELS, TOKENIZER, TEACHER_TOPK, PREDICTIONS, TABLE, RESULTS, EVALUATION,
                 EVALUATION_TABLE, EVALUATION_PREDICTIONS, REPORT_HTML, REPORT_MARKDOWN, REPORT_FIGURES, TUNE)

    def accepts_config(self, raw: Any) -> bool:
        from kdkit.families.lm.config import is_lm_config

        return is_lm_config(raw)

    def load_config(self, path: Path, overrides: list[str], output_dir: Path | None) -> Any:
        from kdkit.families.lm.config import load_lm_config

        return load_lm_config(path, overrides, output_dir)

    def train(self, cfg: Any, console: Console, options: Options) -> None:
        """options.quick (--quick-timing) does not apply: generation speed is timed once, by the exact-match pass."""
        from kdkit.families.lm.run import run_lm

        run_lm(cfg, console=console, overwrite=options.overwrite, resume=options.resume,
               copy_teacher=options.copy_teacher)

    def tune(self, cfg: Any, trials: int | None, console: Console, storage: str | None) -> None:
        from kdkit.families.lm.tune import tune_lm

        tune_lm(cfg, trials=trials, console=console, storage=storage)

    def evaluate(self, run_dir: Path, console: Console, options: Options) -> None:
        """Perplexity, exact match and generation speed, measured again."""
        from kdkit.families.lm.commands import evaluate_lm_run

        if options.cost_only:
            raise ConfigError("--cost-only times classification models; a language-model run's generation speed is "
                              "measured with its quality: run `kdkit evaluate RUN_DIR` without --cost-only")
        evaluate_lm_run(run_dir, console=console)

    def predict(self, run_dir: Path, inputs: Path, model: str, options: Options) -> str:
        from kdkit.families.lm.commands import predict_lm

        return predict_lm(run_dir, inputs, model=model, max_new_tokens=options.max_new_tokens)

    def export(self, run_dir: Path, model: str, output: Path | None, console: Console) -> None:
        """ids -> next-token logits, both axes dynamic; the tokenizer beside it."""
        from kdkit.families.lm.commands import export_lm

        done = export_lm(run_dir, model, output)
        console.print(f"{done.path}: {done.size_bytes / 1024:.1f} KB ({done.exporter} exporter); ONNX Runtime vs "
                      f"PyTorch on 64 test rows: max |diff| {done.max_abs_diff:.1e}, same next token "
                      f"{done.agreement:.1%}; tokenizer in {done.path.with_name(done.path.stem + '_tokenizer')}",
                      highlight=False)

    def load(self, run_dir: Path, model: str, device: str) -> Any:
        from kdkit.families.lm.commands import load_lm

        return load_lm(run_dir, model, device)

    def demo(self, task: str, output_dir: Path, console: Console, options: Options, seed: int,
             overrides: list[str]) -> None:
        """Generated addition (kdkit.families.lm.demo): the config configs/lm_addition.yaml, shrunk by --quick."""
        from kdkit.families.lm.demo import run_lm_demo

        if options.resume:
            raise ConfigError("--resume does not apply to `demo --task lm` yet; rerun it (it takes a few minutes) "
                              "with --overwrite")
        run_lm_demo(seed=seed, output_dir=output_dir, quick=options.quick, console=console,
                    overwrite=options.overwrite, overrides=overrides)

    def write_report(self, run_dir: Path) -> Any:
        """Its own table (perplexity, token accuracy, exact match, generation speed) and verdict."""
        from kdkit.families.lm.report import write_lm_report
        from kdkit.report.build import ReportFiles

        return ReportFiles(*write_lm_report(run_dir))

    def write_compare(self, run_dirs: list[Path], output_dir: Path) -> Any:
        from kdkit.families.lm.report import write_lm_compare
        from kdkit.report.compare import CompareFiles

        return CompareFiles(*write_lm_compare(run_dirs, output_dir))


FAMILY = LanguageModels()
