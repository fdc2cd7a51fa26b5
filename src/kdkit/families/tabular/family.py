"""The tabular family as the command line sees it (kdkit.families.base.Family). Its runs are made by
`kdkit tabular fit` (or `kdkit train` of a config with ``kind: tabular``, kdkit.families.tabular.config); `kdkit
evaluate`, `predict` and `kdkit.load` read them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from kdkit.errors import ConfigError
from kdkit.families.base import Options
from kdkit.run.rundir import (
    CONFIG,
    EVALUATION,
    EVALUATION_PREDICTIONS,
    EVALUATION_TABLE,
    HOLDOUT,
    MODELS,
    PREDICTIONS,
    REPORT_FIGURES,
    REPORT_HTML,
    REPORT_MARKDOWN,
    RESULTS,
    TABLE,
    TEST_PREDICTIONS,
    TUNE,
)
from kdkit.verdict import ACCURACY


class Tables:
    name = "tabular"
    fallback = False
    compare_group = "classification"  # `kdkit compare` compares runs of one group
    demo_tasks = ()
    verdict_metrics = (ACCURACY,)  # per held-out row
    run_files = (CONFIG, MODELS, HOLDOUT, PREDICTIONS, TABLE, RESULTS, TEST_PREDICTIONS, EVALUATION, EVALUATION_TABLE,
                 EVALUATION_PREDICTIONS, REPORT_HTML, REPORT_MARKDOWN, REPORT_FIGURES, TUNE)

    def accepts_config(self, raw: Any) -> bool:
        from kdkit.families.tabular.config import is_tabular_config

        return is_tabular_config(raw)

    def load_config(self, path: Path, overrides: list[str], output_dir: Path | None) -> Any:
        from kdkit.families.tabular.config import load_tabular_config

        return load_tabular_config(path, overrides, output_dir)

    def train(self, cfg: Any, console: Console, options: Options) -> None:
        """As `kdkit tabular fit CONFIG` (a tabular run has no resume: its folds are fitted again)."""
        from kdkit.families.tabular.run import run_fit, tuned_holdout_beside

        if options.resume:
            raise ConfigError("a tabular run cannot be resumed; run it again with --overwrite")
        run_fit(cfg, console, overwrite=options.overwrite, tuned=tuned_holdout_beside(options.config),
                tuned_from=options.config, quick_cost=options.quick)

    def tune(self, cfg: Any, trials: int | None, console: Console, storage: str | None) -> None:
        """As `kdkit tabular tune CONFIG`."""
        from kdkit.families.tabular.run import run_tune

        if trials is not None:
            cfg = cfg.model_copy(update={"tune": cfg.tune.model_copy(update={"trials": trials})})
        run_tune(cfg, console, storage)

    def evaluate(self, run_dir: Path, console: Console, options: Options) -> None:
        """The held-out rows predicted again by the saved fold models."""
        from kdkit.families.tabular.rundir import evaluate_tabular_run

        if options.cost_only:
            raise ConfigError("--cost-only re-times torch models; `kdkit evaluate RUN_DIR` re-times a tabular run's "
                              "models with its quality")
        evaluate_tabular_run(run_dir, console=console, quick_cost=options.quick)

    def predict(self, run_dir: Path, inputs: Path, model: str, options: Options) -> str:
        """A CSV of rows: the model's columns by name, probabilities per class."""
        from kdkit.families.tabular.cli import predict_rows

        return predict_rows(run_dir, inputs, model).to_csv(index=False)

    def export(self, run_dir: Path, model: str, output: Path | None, console: Console) -> None:
        raise ConfigError(f"{run_dir} is a tabular run; `kdkit export` writes ONNX for torch models (classification "
                          "and language-model runs); load its models with kdkit.load(RUN_DIR, model=...)")

    def load(self, run_dir: Path, model: str, device: str) -> Any:
        from kdkit.families.tabular.load import load_role

        return load_role(run_dir, model)

    def demo(self, task: str, output_dir: Path, console: Console, options: Options, seed: int,
             overrides: list[str]) -> None:
        raise ConfigError("the tabular family has no demo; run `kdkit tabular fit configs/tabular.yaml`")

    def write_report(self, run_dir: Path) -> Any:
        """A tabular run is written in the classification run's contract, so the same report reads it."""
        from kdkit.report.build import write_report

        return write_report(run_dir)

    def write_compare(self, run_dirs: list[Path], output_dir: Path) -> Any:
        from kdkit.report.compare import write_compare

        return write_compare(run_dirs, output_dir)


FAMILY = Tables()
