"""The tabular family as the command line sees it (kdkit.families.base.Family). Its runs are made by
`kdkit tabular fit`; `kdkit evaluate`, `predict` and `kdkit.load` read them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from kdkit.errors import ConfigError
from kdkit.families.base import Options


class Tables:
    name = "tabular"
    fallback = False

    def accepts_config(self, raw: Any) -> bool:
        return False  # tabular runs are configured by `kdkit tabular fit`'s flags

    def load_config(self, path: Path, overrides: list[str], output_dir: Path | None) -> Any:
        raise ConfigError("tabular runs are made by `kdkit tabular fit`, not from a YAML config")

    def train(self, cfg: Any, console: Console, options: Options) -> None:
        raise ConfigError("tabular runs are made by `kdkit tabular fit`")

    def tune(self, cfg: Any, trials: int | None, console: Console, storage: str | None) -> None:
        raise ConfigError("tabular searches are made by `kdkit tabular tune`")

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


FAMILY = Tables()
