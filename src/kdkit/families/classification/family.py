"""The classification family as the command line sees it (kdkit.families.base.Family): the fallback, which takes
every config and run directory the other families do not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from kdkit.errors import ConfigError
from kdkit.families.base import Options
from kdkit.run.rundir import (
    BOUNDARY,
    CHECKPOINTS,
    CONFIG,
    COST,
    COST_TABLE,
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
    TUNE,
)
from kdkit.verdict import ACCURACY


class Classification:
    name = "classification"
    fallback = True
    compare_group = "classification"  # `kdkit compare` compares runs of one group
    demo_tasks = ("signals", "text", "tagging")
    verdict_metrics = (ACCURACY,)  # per test sample, or per sentence for per-token labels
    run_files = (CONFIG, METRICS, BOUNDARY, CHECKPOINTS, MODELS, PREDICTIONS, TABLE, RESULTS, EVALUATION,
                 EVALUATION_TABLE, EVALUATION_PREDICTIONS, COST, COST_TABLE, REPORT_HTML, REPORT_MARKDOWN,
                 REPORT_FIGURES, TUNE)

    def accepts_config(self, raw: Any) -> bool:
        return True

    def load_config(self, path: Path, overrides: list[str], output_dir: Path | None) -> Any:
        from kdkit.families.classification.config import load_config

        return load_config(path, overrides, output_dir)  # before the training stack is imported: mistakes at once

    def train(self, cfg: Any, console: Console, options: Options) -> None:
        from kdkit.distributed import process_group
        from kdkit.families.classification.pipeline import run

        with process_group():
            run(cfg, console=console, quick_cost=options.quick, resume=options.resume, overwrite=options.overwrite,
                copy_teacher=options.copy_teacher)

    def tune(self, cfg: Any, trials: int | None, console: Console, storage: str | None) -> None:
        from kdkit.families.classification.tune import tune as run_tune

        run_tune(cfg, trials=trials, console=console, storage=storage)

    def evaluate(self, run_dir: Path, console: Console, options: Options) -> None:
        if options.cost_only:
            from kdkit.families.classification.remeasure import remeasure_cost

            remeasure_cost(run_dir, console=console, quick=options.quick, threads=options.threads)
            return
        from kdkit.families.classification.pipeline import evaluate_run

        evaluate_run(run_dir, console=console, quick_cost=options.quick, threads=options.threads)

    def predict(self, run_dir: Path, inputs: Path, model: str, options: Options) -> str:
        from kdkit.deploy.predict_output import prediction_rows, to_csv
        from kdkit.run.rundir import ROLES

        if model not in ROLES:
            raise ConfigError(f"unknown model '{model}'; choose one of: {', '.join(ROLES)}")
        loaded = self.load(run_dir, model, "cpu")
        names, x, raw = loaded.read(inputs, options.text_column)
        return to_csv(prediction_rows(loaded, names, x, raw))

    def export(self, run_dir: Path, model: str, output: Path | None, console: Console) -> None:
        from kdkit.run.rundir import ROLES, RunDir

        if model not in ROLES:
            raise ConfigError(f"unknown model '{model}'; choose one of: {', '.join(ROLES)}")
        target = output or RunDir(run_dir).onnx(model)
        if target.is_dir():
            raise ConfigError(f"--output {target} is a directory; give a file name such as "
                              f"{target / (model + '.onnx')}")
        console.print(f"export: loading {run_dir} and its test data, exporting {model} to ONNX, then checking it in "
                      "ONNX Runtime", highlight=False)
        _export(run_dir, model, target, console)

    def load(self, run_dir: Path, model: str, device: str) -> Any:
        from kdkit.families.classification.load import load_classification

        return load_classification(run_dir, model, device)

    def demo(self, task: str, output_dir: Path, console: Console, options: Options, seed: int,
             overrides: list[str]) -> None:
        from kdkit import distributed
        from kdkit.families.classification.demo import demo_config
        from kdkit.families.classification.pipeline import run

        cfg = demo_config(seed=seed, output_dir=output_dir, quick=options.quick, task=task, overrides=overrides)
        with distributed.process_group():
            if distributed.is_main():
                console.print(
                    f"kdkit demo ({task}): {cfg.data.name}, teacher {cfg.teacher.name}{cfg.teacher.params}, student "
                    f"{cfg.student.name}{cfg.student.params}, transfer set {cfg.data.transfer_size:,} generated "
                    "samples"
                )
            run(cfg, console=console, quick_cost=options.quick, resume=options.resume, overwrite=options.overwrite)

    def write_report(self, run_dir: Path) -> Any:
        from kdkit.report.build import write_report

        return write_report(run_dir)

    def write_compare(self, run_dirs: list[Path], output_dir: Path) -> Any:
        from kdkit.report.compare import write_compare

        return write_compare(run_dirs, output_dir)


def _export(run_dir: Path, model: str, target: Path, console: Console) -> None:
    """The run's `model` to ONNX at `target` (token ids in, for a raw-text run, the tokenizer beside it)."""
    from kdkit.adapters import example_inputs
    from kdkit.deploy.export import export_onnx
    from kdkit.families.classification.pipeline import load_run_models
    from kdkit.models.raw_text import is_raw_text
    from kdkit.run.meta import onnx_metadata

    _cfg, bundle, models = load_run_models(run_dir, roles=(model,))
    inputs = example_inputs(bundle.test, size=64)
    if is_raw_text(inputs):  # data.raw_text: the graph takes token ids, the tokenizer is written beside it
        from kdkit.deploy.export_text import export_raw_text, tokenizer_folder

        done = export_raw_text(models[model], inputs, target, vocab=getattr(bundle, "vocab", None),
                               metadata=onnx_metadata(run_dir, model))
        checked = f"{len(inputs)} test texts (tokenized for ONNX by {tokenizer_folder(target)}, raw for PyTorch)"
    else:
        done = export_onnx(models[model], inputs, target, metadata=onnx_metadata(run_dir, model))
        checked = f"{len(inputs)} test inputs"
    console.print(
        f"{done.path}: {done.size_bytes / 1024:.1f} KB ({done.exporter} exporter); ONNX Runtime vs PyTorch on "
        f"{checked}: max |diff| {done.max_abs_diff:.1e}, same class {done.agreement:.1%}, "
        f"batch-{len(inputs)} latency {done.onnx_ms:.3f} ms vs {done.torch_ms:.3f} ms", highlight=False
    )


FAMILY = Classification()
