"""Command line: `kdkit demo`, `kdkit train CONFIG.yaml`, `kdkit evaluate RUN_DIR`, and sub-apps.

Errors the user can fix (KdkitError) print one line and exit with code 2; no traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from kdkit.errors import KdkitError, plain_warnings


def _guide(page: str) -> str:
    """The last line of a command's --help: the page of the documentation that explains it."""
    return f"Guide: {page} (in the repository; `make docs` builds the site)"


app = typer.Typer(
    name="kdkit", add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Knowledge distillation: teacher -> small student, measured (accuracy, fidelity, cost).",
    epilog=_guide("docs/index.md"),
)
console = Console()
SET = typer.Option([], "--set", metavar="PATH=VALUE", help="change a config value without editing the file, e.g. "
                   "--set train.epochs=30 --set distill.losses.0.T=2 (the value is read as YAML; repeat for more); "
                   "checked like the file")


@contextmanager
def _process_group() -> Iterator[None]:
    """Join the process group when launched by torchrun (a no-op otherwise) and always leave it at the end, so
    every process exits cleanly; after an error it leaves without waiting for processes that may never arrive."""
    from kdkit import distributed

    distributed.init_from_env()
    try:
        yield
    except BaseException:
        distributed.shutdown(wait=False)
        raise
    distributed.shutdown()


@app.command(epilog=_guide("docs/getting-started.md"))
def demo(
    quick: bool = typer.Option(False, "--quick", help="a few epochs on less data (for tests, ~20 s)"),
    seed: int = typer.Option(0, help="random seed: the same seed gives the same numbers"),
    output_dir: Path | None = typer.Option(None, "--output-dir", "-o", help="where the run is written "
                                           "(default: runs/demo, or runs/demo_<task>)"),
    task: str = typer.Option("signals", help="signals (MNIST-1D), text (generated reviews), tagging (per token) or lm "
                                                "(language model, generated addition)"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted run in the output directory"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a run already in the output directory"),
    overrides: list[str] = SET,
) -> None:
    """Distil a teacher into a small student on data generated offline and print the comparison."""
    from kdkit import distributed
    from kdkit.families.classification.demo import demo_config
    from kdkit.families.classification.pipeline import run

    default_dir = Path("runs/demo") if task == "signals" else Path(f"runs/demo_{task}")
    if task == "lm":  # causal language models have their own three-row pipeline (kdkit.families.lm.demo)
        from kdkit.errors import ConfigError
        from kdkit.families.lm.demo import run_lm_demo

        if resume:
            raise ConfigError("--resume does not apply to `demo --task lm` yet; rerun it (it takes a few minutes) "
                              "with --overwrite")
        run_lm_demo(seed=seed, output_dir=output_dir or default_dir, quick=quick, console=console, overwrite=overwrite,
                    overrides=overrides)
        return
    cfg = demo_config(seed=seed, output_dir=output_dir or default_dir, quick=quick, task=task, overrides=overrides)
    with _process_group():
        if distributed.is_main():
            console.print(
                f"kdkit demo ({task}): {cfg.data.name}, teacher {cfg.teacher.name}{cfg.teacher.params}, student "
                f"{cfg.student.name}{cfg.student.params}, transfer set {cfg.data.transfer_size:,} generated samples"
            )
        run(cfg, console=console, quick_cost=quick, resume=resume, overwrite=overwrite)


@app.command(epilog=_guide("docs/getting-started.md#configs-and-the-command-line"))
def train(
    config: Path = typer.Argument(..., help="YAML config (see configs/ for examples)"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted run from its last checkpoint "
                                "(finished stages are loaded, not redone; the result equals an uninterrupted run)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a run already in output_dir"),
    copy_teacher: bool = typer.Option(False, "--copy-teacher", help="copy a teacher loaded from teacher.checkpoint "
                                      "into the run's models/ (default: the run refers to the file by path and "
                                      "SHA-256, and refuses to load it once the file has changed)"),
    overrides: list[str] = SET,
    output_dir: Path | None = typer.Option(None, "--output-dir", "-o", help="where the run is written (replaces "
                                           "the config's output_dir)"),
) -> None:
    """Run the teacher / student alone / distilled student pipeline from a YAML config."""
    from kdkit.families.classification.config import load_config
    from kdkit.families.lm.config import load_lm_config

    # a language-model config (data.name: synthetic_addition, lm_files), or None
    lm_cfg = load_lm_config(config, overrides, output_dir)
    if lm_cfg is not None:
        from kdkit.families.lm.run import run_lm

        run_lm(lm_cfg, console=console, overwrite=overwrite, resume=resume)
        return
    cfg = load_config(config, overrides, output_dir)  # before the training stack is imported: mistakes at once
    from kdkit.families.classification.pipeline import run

    with _process_group():
        run(cfg, console=console, resume=resume, overwrite=overwrite, copy_teacher=copy_teacher)


@app.command(epilog=_guide("docs/tuning.md"))
def tune(
    config: Path = typer.Argument(..., help="YAML config; its tune: section holds the search space"),
    trials: int | None = typer.Option(None, min=1, help="number of trials (default: tune.trials of the config)"),
    storage: str | None = typer.Option(None, "--storage", help="database URL shared by several workers, e.g. "
                                       "postgresql+psycopg://user@host/db (default: SQLite in OUTPUT_DIR/tune)"),
    overrides: list[str] = SET,
    output_dir: Path | None = typer.Option(None, "--output-dir", "-o", help="replaces the config's output_dir (the "
                                           "search writes OUTPUT_DIR/tune/)"),
) -> None:
    """Search distillation hyperparameters (Optuna) on the validation split; writes best.yaml for `kdkit train`."""
    from kdkit.errors import ConfigError
    from kdkit.families.classification.config import load_config

    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:  # see docs/scaling-out.md#sharing-a-study-between-workers
        raise ConfigError("kdkit tune does not run under torchrun: start one `kdkit tune CONFIG --storage URL` "
                          "worker per GPU or machine instead, all sharing the one study")
    from kdkit.families.lm.config import load_lm_config

    # a language-model config: its own search (kdkit.families.lm.tune)
    lm_cfg = load_lm_config(config, overrides, output_dir)
    if lm_cfg is not None:
        from kdkit.families.lm.tune import tune_lm

        tune_lm(lm_cfg, trials=trials, console=console, storage=storage)
        return
    cfg = load_config(config, overrides, output_dir)  # before Optuna and the training stack are imported
    from kdkit.families.classification.tune import tune as run_tune

    run_tune(cfg, trials=trials, console=console, storage=storage)


@app.command(epilog=_guide("docs/results.md"))
def evaluate(
    run_dir: Path = typer.Argument(..., help="a run directory written by `kdkit demo` or `kdkit train`"),
    quick: bool = typer.Option(False, "--quick", help="fewer timing repetitions"),
    cost_only: bool = typer.Option(False, "--cost-only", help="only re-time latency and throughput (no accuracy); "
                                   "writes cost.json and cost.md"),
    threads: int | None = typer.Option(None, "--threads", min=1, help="torch threads while timing (default: as "
                                       "OMP_NUM_THREADS sets; recorded with the numbers)"),
) -> None:
    """Re-evaluate the saved models of a run directory and print the table again; writes evaluation.json,
    evaluation.md and evaluation_predictions.npz beside the training's results, which stay as they are."""
    from kdkit.families.lm.rundir import is_lm_run

    if is_lm_run(run_dir):  # a language-model run: perplexity, exact match and generation speed (kdkit.lm)
        from kdkit.errors import ConfigError
        from kdkit.families.lm.commands import evaluate_lm_run

        if cost_only:
            raise ConfigError("--cost-only times classification models; a language-model run's generation speed is "
                              "measured with its quality: run `kdkit evaluate RUN_DIR` without --cost-only")
        evaluate_lm_run(run_dir, console=console)
        return
    from kdkit.run.rundir import run_kind

    if run_kind(run_dir) == "tabular":  # the held-out rows predicted again by the saved fold models
        from kdkit.errors import ConfigError
        from kdkit.families.tabular.rundir import evaluate_tabular_run

        if cost_only:
            raise ConfigError("--cost-only re-times torch models; `kdkit evaluate RUN_DIR` re-times a tabular run's "
                              "models with its quality")
        evaluate_tabular_run(run_dir, console=console, quick_cost=quick)
        return
    if cost_only:
        from kdkit.families.classification.remeasure import remeasure_cost

        remeasure_cost(run_dir, console=console, quick=quick, threads=threads)
        return
    from kdkit.families.classification.pipeline import evaluate_run

    evaluate_run(run_dir, console=console, quick_cost=quick, threads=threads)


@app.command(epilog=_guide("docs/deploying.md#deploying-the-student-onnx"))
def export(
    run_dir: Path = typer.Argument(..., help="a run directory written by `kdkit demo` or `kdkit train`"),
    model: str = typer.Option("student_kd", help="teacher, student_alone or student_kd"),
    output: Path | None = typer.Option(None, "--output", "-o", help="default: RUN_DIR/models/<model>.onnx"),
) -> None:
    """Export a run's model to ONNX and check it against PyTorch with ONNX Runtime on test inputs."""
    from kdkit.adapters import example_inputs
    from kdkit.deploy.export import export_onnx
    from kdkit.errors import ConfigError
    from kdkit.families.classification.pipeline import load_run_models
    from kdkit.families.lm.rundir import is_lm_run
    from kdkit.run.rundir import ROLES, RunDir

    if is_lm_run(run_dir):  # ids -> next-token logits, both axes dynamic; the tokenizer beside it
        from kdkit.families.lm.commands import export_lm

        done = export_lm(run_dir, model, output)
        console.print(f"{done.path}: {done.size_bytes / 1024:.1f} KB ({done.exporter} exporter); ONNX Runtime vs "
                      f"PyTorch on 64 test rows: max |diff| {done.max_abs_diff:.1e}, same next token "
                      f"{done.agreement:.1%}; tokenizer in {done.path.with_name(done.path.stem + '_tokenizer')}",
                      highlight=False)
        return
    if model not in ROLES:
        raise ConfigError(f"unknown model '{model}'; choose one of: {', '.join(ROLES)}")
    target = output or RunDir(run_dir).onnx(model)
    if target.is_dir():
        raise ConfigError(f"--output {target} is a directory; give a file name such as {target / (model + '.onnx')}")
    console.print(f"export: loading {run_dir} and its test data, exporting {model} to ONNX, then checking it in "
                  "ONNX Runtime", highlight=False)
    _cfg, bundle, models = load_run_models(run_dir, roles=(model,))
    inputs = example_inputs(bundle.test, size=64)
    from kdkit.models.raw_text import is_raw_text
    from kdkit.run.meta import onnx_metadata

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


@app.command(epilog=_guide("docs/deploying.md#using-the-student"))
def predict(
    run_dir: Path = typer.Argument(..., help="a run directory written by `kdkit demo` or `kdkit train`"),
    inputs: Path = typer.Argument(..., help=".npy or .csv of inputs, an image or a folder of images (image runs), "
                                  "a .txt with one text per line or a .csv / .jsonl (text runs)"),
    model: str = typer.Option("student_kd", help="teacher, student_alone or student_kd"),
    output: Path | None = typer.Option(None, "--output", "-o", help="also write the predictions as this CSV"),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", min=1, help="language-model runs: longest "
                                              "completion (default: up to the models' context)"),
    text_column: str | None = typer.Option(None, "--text-column", help="text runs: the .csv column or .jsonl field "
                                           "holding the texts (default: the run's own data.text_column)"),
) -> None:
    """Predict classes of new inputs with a run's model, preprocessed as at training time; prints CSV lines. For a
    language-model run: continue each line of a .txt (greedy), printing prompt and completion."""
    from kdkit.families.lm.rundir import is_lm_run

    if is_lm_run(run_dir):
        from kdkit.families.lm.commands import predict_lm

        text = predict_lm(run_dir, inputs, model=model, max_new_tokens=max_new_tokens)
    else:
        from kdkit.deploy.predict_output import prediction_rows, to_csv
        from kdkit.families.runs import load
        from kdkit.run.rundir import run_kind

        if run_kind(run_dir) == "tabular":  # a CSV of rows: the model's columns by name, probabilities per class
            from kdkit.families.tabular.cli import predict_rows

            text = predict_rows(run_dir, inputs, model).to_csv(index=False)
        else:
            loaded = load(run_dir, model=model)
            names, x, raw = loaded.read(inputs, text_column)
            text = to_csv(prediction_rows(loaded, names, x, raw))
    console.print(text, end="", markup=False, highlight=False, soft_wrap=True)
    if output is not None:
        from kdkit.io.checkpoint import write_atomic

        write_atomic(output, text)
        Console(stderr=True).print(f"predictions: {output}", markup=False, highlight=False)


@app.command(epilog=_guide("docs/results.md#the-report"))
def report(
    run_dir: Path = typer.Argument(..., help="a run directory written by `kdkit demo` or `kdkit train`"),
    screenshot: Path | None = typer.Option(None, help="also save a PNG of the report's top (needs chromium)"),
) -> None:
    """Write report.html (self-contained) and report.md: generalization, fidelity, cost and plots of a run."""
    from kdkit.families.runs import write_report

    files = write_report(run_dir)
    console.print(f"report: {files.html}\n        {files.markdown} (+ {len(files.figures)} figures)")
    if screenshot is not None:
        from kdkit.report.browser import screenshot as take_screenshot

        console.print(f"screenshot: {take_screenshot(files.html, screenshot)}")


@app.command(epilog=_guide("docs/results.md#why-it-paid-or-not-the-diagnosis"))
def diagnose(
    run_dir: Path = typer.Argument(..., help="a run directory of `kdkit demo`, `train` (classification or language "
                                   "model) or `tabular fit`"),
    as_json: bool = typer.Option(False, "--json", help="print the signals, the prediction and the advice as JSON"),
) -> None:
    """Why distillation paid or not: the run's signals (teacher confidence, student fit, agreement, sizes) and the
    advice of the rules that read them, next to the measured verdict."""
    from kdkit.report.diagnosis import diagnosis_text, load_diagnosis

    found = load_diagnosis(run_dir)
    if as_json:
        import json

        data = {**found.diagnosis.as_dict(), "kind": found.kind,
                "measured": None if found.verdict is None else found.verdict.kind}
        console.print(json.dumps(data, indent=1), markup=False, highlight=False, soft_wrap=True)
        return
    console.print(f"kdkit diagnose: {run_dir} ({found.kind})", markup=False, highlight=False)
    for line in diagnosis_text(found):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command(epilog=_guide("docs/results.md#the-report"))
def compare(
    run_dirs: list[Path] = typer.Argument(..., help="run directories (methods, schemes, seeds)"),
    output_dir: Path = typer.Option(Path("runs/compare"), "--output-dir", "-o", help="where to write"),
) -> None:
    """Several runs in one table (mean +- std over seeds) and one accuracy-vs-latency chart, HTML and Markdown."""
    from kdkit.families.runs import write_compare

    files = write_compare(run_dirs, output_dir)
    console.print(f"comparison: {files.html}\n            {files.markdown}")
    for line in files.groups:
        console.print(f"setting {line}", markup=False, highlight=False, soft_wrap=True)
    for line in files.verdicts:
        console.print(f"verdict {line}", markup=False, highlight=False, soft_wrap=True)


def _add_subapps() -> None:
    # optional extras: the tabular commands exist when their libraries (kdkit[tabular]) are installed
    try:
        from kdkit.families.tabular.cli import app as tabular_app
    except ImportError:
        return
    app.add_typer(tabular_app, name="tabular", help="Tabular distillation: boosted teachers, privileged columns.",
                  epilog=_guide("docs/guides/tables.md"))


_add_subapps()


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the Typer app and turns KdkitError into one line on stderr and exit code 2."""
    try:
        # standalone mode: Typer itself reports usage errors (exit 2) and exits 0 on success; only our own
        # errors come through, because pretty exceptions are off
        with plain_warnings():  # a warning for the user is one line, not a path into kdkit's source
            app(args=argv, prog_name="kdkit")
    except KdkitError as err:
        # escaped: a message may hold brackets, e.g. pip install 'kdkit[onnx]', that rich would take for markup
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
